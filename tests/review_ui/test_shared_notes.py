"""A reviewer's note is internal unless the reviewer ticks "share with the platform": the results API and the
webhooks carry only the shared ones, and only once the review is final. Existing notes migrate as internal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from alembic import command
from sqlalchemy import create_engine, select, text

from core.db import migrate
from core.tables import FlagSegment
from review_ui.webhooks import WebhookSender, new_secret
from tests.core.test_migrations import alembic_config, seed_an_old_session
from tests.review_ui.conftest import World, set_webhook, webhook_policy

SHARED_FLAG_NOTE = "a second person at 11 s"
SHARED_SECOND_NOTE = "confirmed: two people on camera"
INTERNAL = ("INTERNAL cat on the chair", "INTERNAL phone, I think", "INTERNAL looks rehearsed", "INTERNAL dull")


def flag_ids(world: World, label: str) -> list[str]:
    with world.context.db() as db:
        query = select(FlagSegment.id).where(FlagSegment.session_id == world.sessions[label])
        return list(db.scalars(query.order_by(FlagSegment.start_ms)))


def share_box(page: str, flag_id: str) -> str:
    """The "share with the platform" checkbox of one flag's row."""
    row = page.split(f'data-id="{flag_id}"')[1].split("</li>")[0]
    found = re.search(r'<input type="checkbox" class="note-shared"[^>]*>', row)
    assert found, "the row has no share box"
    return found[0]


def test_only_the_notes_marked_shared_reach_the_platform_and_only_once_final(
    world: World, webhook_receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    hook_url, received = webhook_receiver
    set_webhook(world.context, world.tenant_ids["a"], hook_url, new_secret())
    session_id = world.sessions["a"]
    base = f"/review/sessions/{session_id}"
    first, second = world.browser("reviewer_a"), world.browser("reviewer_a2")
    no_face, two_faces, away = flag_ids(world, "a")
    assert first.submit(f"{base}/claim").is_success
    decide = f"{base}/flags/{{}}/decision"
    assert first.submit(decide.format(no_face), decision="dismissed", note=INTERNAL[0]).is_success  # not ticked
    shared = first.submit(decide.format(two_faces), decision="confirmed", note=SHARED_FLAG_NOTE, note_shared="on")
    assert shared.is_success
    assert first.submit(decide.format(away), decision="dismissed", note=INTERNAL[3], note_shared="").is_success
    page = first.page(base).text
    assert "checked" in share_box(page, two_faces) and "checked" not in share_box(page, no_face)
    assert first.submit(f"{base}/flags", kind="phone", start_s="8", end_s="10", note=INTERNAL[1]).is_success
    outcome = first.submit(f"{base}/outcome", outcome="Rules Violation", note=INTERNAL[2])
    assert outcome.json()["status"] == "awaiting_second"

    platform = httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['a']}"})
    pending = platform.get(f"/v1/sessions/{session_id}/review")
    assert pending.json()["final"] is False
    assert SHARED_FLAG_NOTE not in pending.text  # shared, but not final: four eyes first

    assert second.submit(f"{base}/claim").is_success
    confirmed = second.submit(f"{base}/second-review", verdict="confirm", note=SHARED_SECOND_NOTE, note_shared="on")
    assert confirmed.json()["status"] == "final"
    answer = platform.get(f"/v1/sessions/{session_id}/review")
    platform.close()
    final = answer.json()
    notes = {f["id"]: f["note"] for f in final["flags"]}
    assert notes[two_faces] == SHARED_FLAG_NOTE
    assert notes[no_face] is None and notes[away] is None
    assert [f["note"] for f in final["flags"] if f["kind"] == "phone"] == [None]
    assert [(c["role"], c["text"]) for c in final["comments"]] == [("second_reviewer", SHARED_SECOND_NOTE)]
    assert not [note for note in INTERNAL if note in answer.text]

    sender = WebhookSender(world.context.db, webhook_policy(world.context, max_attempts=3, backoff_s=0.1))
    sender.send_due()  # other tests' deliveries may be due too, in a shared database
    (body,) = [body for _, body in received if json.loads(body)["review"]["session_id"] == session_id]
    sent = json.loads(body)["review"]
    assert (sent["flags"], sent["comments"]) == (
        [{k: v for k, v in f.items() if k != "evidence_urls"} for f in final["flags"]],
        final["comments"],
    )
    assert not [note for note in INTERNAL if note in body.decode()]

    # Reviewers and officers still read every note, each marked for whom it is.
    page = first.page(base).text
    assert INTERNAL[2] in page and SHARED_SECOND_NOTE in page
    assert "(internal)" in page and "(shared with the platform)" in page


def test_the_first_reviewers_shared_comment_reaches_the_platform_with_the_outcome(world: World) -> None:
    session_id = world.sessions["b"]
    base = f"/review/sessions/{session_id}"
    reviewer = world.browser("reviewer_b")
    assert reviewer.submit(f"{base}/claim").is_success
    outcome = reviewer.submit(f"{base}/outcome", outcome="Suspicious", note="shared: a phone", note_shared="on")
    assert outcome.json()["status"] == "final"
    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['b']}"}) as platform:
        final = platform.get(f"/v1/sessions/{session_id}/review").json()
    assert final["final"] and [(c["role"], c["text"]) for c in final["comments"]] == [("reviewer", "shared: a phone")]


def test_existing_notes_migrate_as_internal(tmp_path: Path) -> None:
    """What was written before sharing existed stays internal, including what was already prepared for the
    platform and is still held here (a result kept under appeal, a webhook not yet delivered)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0013")
    engine = create_engine(url)
    result = {
        "session_id": "s",
        "flags": [{"id": "g", "kind": "no_face", "decision": "confirmed", "note": "empty chair"}],
        "comments": [{"by": "u1", "role": "reviewer", "text": "left the room"}],
    }
    body = json.dumps({"event": "review.final", "review": result}, sort_keys=True)
    with engine.begin() as conn:
        seed_an_old_session(conn, "reviewed", with_chunks_done=True)
        conn.execute(
            text(
                "INSERT INTO users (id, username, password_hash, role, failed_logins, created_at) VALUES "
                "('u1', 'first', 'x', 'reviewer', 0, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO segments (id, session_id, kind, start_ms, end_ms, score, peak_ms, evidence_keys, "
                "detector_versions, pipeline_version, created_at) VALUES "
                "('g', 's', 'no_face', 0, 1000, 0.9, 500, '[]', '{}', '1', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO flag_decisions (segment_id, session_id, decision, note, reviewer_id, decided_at) "
                "VALUES ('g', 's', 'confirmed', 'empty chair', 'u1', '2026-02-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO session_reviews (session_id, outcome, note, status, reviewer_id, decided_at, "
                "finalised_at) VALUES ('s', 'Suspicious', 'left the room', 'final', 'u1', '2026-02-01', '2026-02-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO review_outcomes (session_id, version, outcome, decided_by, decided_at, reopened_at, "
                "platform_result) VALUES ('s', 1, 'Suspicious', 'u1', '2026-02-01', '2026-02-03', :result)"
            ),
            {"result": json.dumps(result)},
        )
        for delivery, state in (("owed", "pending"), ("sent", "delivered")):
            conn.execute(
                text(
                    "INSERT INTO webhook_deliveries (id, tenant_id, session_id, event, url, body, state, attempts, "
                    "next_attempt_at, created_at) VALUES (:id, 't', 's', 'review.final', 'https://platform.example/h', "
                    ":body, :state, 0, '2026-02-01', '2026-02-01')"
                ),
                {"id": delivery, "body": body, "state": state},
            )
    migrate(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT note, note_shared FROM flag_decisions")).one() == ("empty chair", 0)
        assert conn.execute(text("SELECT note_shared, second_note_shared FROM session_reviews")).one() == (0, 0)
        kept = json.loads(conn.execute(text("SELECT platform_result FROM review_outcomes")).scalar_one())
        bodies = {row.id: row.body for row in conn.execute(text("SELECT id, body FROM webhook_deliveries"))}
    assert (kept["flags"][0]["note"], kept["comments"], kept["flags"][0]["decision"]) == (None, [], "confirmed")
    owed = json.loads(bodies["owed"])["review"]
    assert (owed["flags"][0]["note"], owed["comments"]) == (None, [])
    assert bodies["sent"] == body  # what a platform already received is a record of what was sent
    command.downgrade(config, "0013")
    engine.dispose()
