"""Review over HTTP: sign-in and lockout, the queue, claims, decisions, four eyes, results to the platform."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI, Response
from sqlalchemy import select, text

from core.audit_texts import readable_details
from core.db import utcnow
from core.tables import AuditEvent, ExamSession, FlagDecision, FlagSegment, SessionReview, Tenant, WebhookDelivery
from core.vocabulary import Role
from proctor.local_server import BackgroundServer
from review_ui.accounts import add_user, assign
from review_ui.webhooks import ID_HEADER, WebhookSender, new_secret, verify
from tests.review_ui.conftest import PASSWORD, Browser, World, set_webhook, webhook_policy


def flag_ids(world: World, label: str) -> list[str]:
    with world.context.db() as db:
        rows = db.execute(
            text("SELECT id FROM segments WHERE session_id = :s ORDER BY start_ms"), {"s": world.sessions[label]}
        )
        return [r[0] for r in rows]


def test_login_refuses_a_wrong_password_and_locks_after_repeated_failures(world: World) -> None:
    browser = Browser(world.url)
    assert browser.login(world.users["reviewer_a"], "wrong password!").status_code == 401
    for _ in range(4):
        browser.login(world.users["reviewer_a"], "wrong password!")
    locked = browser.login(world.users["reviewer_a"], PASSWORD)
    assert locked.status_code == 401 and "locked" in locked.text
    assert "pp_session" not in browser.cookies
    with world.context.db() as db:
        failures = db.scalars(select(AuditEvent).where(AuditEvent.action == "login_failed")).all()
        assert len([f for f in failures if world.users["reviewer_a"] in f.actor]) == 6


def test_login_sets_a_hardened_cookie_and_logout_ends_the_session(world: World) -> None:
    browser = Browser(world.url)
    response = browser.login(world.users["reviewer_a"], PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/review/queue"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("pp_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert browser.page("/review/queue").status_code == 200
    assert browser.submit("/review/logout").status_code == 303
    stolen = Browser(world.url)
    stolen.cookies.set("pp_session", cookie.split(";")[0].split("=", 1)[1])
    assert stolen.get("/review/queue").status_code == 303  # the old cookie is dead server-side


def test_queue_lists_sessions_by_priority_within_scope_with_counts(world: World) -> None:
    reviewer = world.browser("reviewer_a")
    page = reviewer.page("/review/queue").text
    assert world.sessions["a"] in page and world.sessions["b"] not in page
    assert re.search(r'data-status="to_review"[^>]*>to review <b>1</b>', page)
    # The riskier session goes first. Both are put at the top of the admin's queue, which on PostgreSQL also
    # holds the sessions earlier tests left in the database (50 to a page).
    with world.context.db() as db:
        for label, risk in (("a", 0.999), ("b", 1.0)):
            db.execute(
                text("UPDATE sessions SET risk_score = :r WHERE id = :s"), {"r": risk, "s": world.sessions[label]}
            )
        db.commit()
    admin_page = world.browser("admin").page("/review/queue").text
    assert admin_page.index(world.sessions["b"]) < admin_page.index(world.sessions["a"])
    filtered = reviewer.page("/review/queue?kind=camera_blocked").text
    assert world.sessions["a"] not in filtered


def test_two_reviewers_racing_for_a_claim_never_both_win(world: World) -> None:
    first, second = world.browser("reviewer_a"), world.browser("reviewer_a2")
    first.page("/review/queue"), second.page("/review/queue")
    path = f"/review/sessions/{world.sessions['a']}/claim"
    results: list[int] = []
    barrier = threading.Barrier(2)

    def race(browser: Browser) -> None:
        barrier.wait()
        results.append(browser.submit(path).status_code)

    threads = [threading.Thread(target=race, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]
    with world.context.db() as db:
        session = db.get(ExamSession, world.sessions["a"])
        assert session is not None and session.state == "in_review"


def test_an_expired_claim_can_be_taken_over(world: World) -> None:
    first, second = world.browser("reviewer_a"), world.browser("reviewer_a2")
    path = f"/review/sessions/{world.sessions['a']}/claim"
    assert first.submit(path).status_code == 200
    assert second.submit(path).status_code == 409
    with world.context.db() as db:
        session = db.get(ExamSession, world.sessions["a"])
        assert session is not None
        session.claim_expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
    assert second.submit(path).status_code == 200
    flag = flag_ids(world, "a")[0]
    late = first.submit(f"/review/sessions/{world.sessions['a']}/flags/{flag}/decision", decision="confirmed")
    assert late.status_code == 409 and "claim" in late.json()["detail"]


def test_full_review_with_four_eyes_reaches_the_platform_and_its_webhook(
    world: World, webhook_receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    hook_url, received = webhook_receiver
    secret = new_secret()
    set_webhook(world.context, world.tenant_ids["a"], hook_url, secret)
    session_id = world.sessions["a"]
    base = f"/review/sessions/{session_id}"
    first, second = world.browser("reviewer_a"), world.browser("reviewer_a2")
    assert first.submit(f"{base}/claim").status_code == 200
    no_face, two_faces, away = flag_ids(world, "a")
    assert first.submit(
        f"{base}/flags/{no_face}/decision", decision="dismissed", note="cat, not a person", note_shared="on"
    ).is_success
    assert first.submit(f"{base}/flags/{two_faces}/decision", decision="confirmed").is_success
    assert first.submit(f"{base}/flags/{away}/decision", decision="maybe").status_code == 422
    added = first.submit(
        f"{base}/flags", kind="looking_away", start_s="20", end_s="22", note="reads notes", note_shared="on"
    )
    assert added.is_success
    assert first.submit(f"{base}/flags", kind="no_face", start_s="20", end_s="500").status_code == 422
    assert first.submit(f"{base}/outcome", outcome="Rules Violation").status_code == 422  # a note is required
    outcome = first.submit(f"{base}/outcome", outcome="Rules Violation", note="second person", note_shared="on")
    assert outcome.json()["status"] == "awaiting_second"
    # Not final yet: the platform sees no outcome, and no webhook is owed.
    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['a']}"}) as platform:
        pending = platform.get(f"/v1/sessions/{session_id}/review").json()
        assert pending["final"] is False and pending["outcome"] is None
        # Nor anything the first reviewer wrote: the second reviewer may still overturn it (four eyes).
        assert pending["comments"] == []
        assert all(f["decision"] is None and f["note"] is None for f in pending["flags"])
        assert {f["source"] for f in pending["flags"]} == {"detector"} and len(pending["flags"]) == 3
        # The first reviewer cannot be their own second pair of eyes, nor lock the session against the others.
        refused = first.submit(f"{base}/claim")
        assert refused.status_code == 403 and "different reviewer" in refused.json()["detail"]
        assert first.submit(f"{base}/second-review", verdict="confirm").status_code == 409  # no claim
        assert second.submit(f"{base}/claim").status_code == 200
        confirmed = second.submit(f"{base}/second-review", verdict="confirm", note="agreed", note_shared="on")
        assert confirmed.json()["status"] == "final"

        final = platform.get(f"/v1/sessions/{session_id}/review").json()
    assert final["final"] is True and final["outcome"] == "Rules Violation" and final["state"] == "reviewed"
    assert final["decided_at"].endswith("+00:00")  # the format platforms have always parsed
    decisions = {(f["kind"], f["start_s"], f["end_s"]): (f["decision"], f["note"]) for f in final["flags"]}
    assert decisions[("no_face", 4.8, 6.8)] == ("dismissed", "cat, not a person")
    assert decisions[("multiple_faces", 11.2, 13.2)] == ("confirmed", None)  # no note shared
    assert decisions[("looking_away", 20.0, 22.0)] == ("confirmed", "reads notes")
    assert [c["text"] for c in final["comments"]] == ["second person", "agreed"]

    sender = WebhookSender(world.context.db, webhook_policy(world.context, max_attempts=3, backoff_s=0.1))
    assert sender.send_due() >= 1  # this one, and any other test's due on the same database
    assert len(received) == 1
    headers, body = received[0]
    assert verify(secret, headers, body, utcnow())  # Standard Webhooks: webhook-id, -timestamp, -signature
    assert not verify(new_secret(), headers, body, utcnow())
    assert not verify(secret, headers, body, utcnow() + timedelta(minutes=10))  # replay
    payload = json.loads(body)
    assert payload["event"] == "review.final" and payload["review"]["outcome"] == "Rules Violation"
    assert payload["review"]["decided_at"] == final["decided_at"]
    assert list(payload["review"]) == sorted(payload["review"])  # one canonical body: keys sorted
    with world.context.db() as db:
        delivery = db.scalars(select(WebhookDelivery).where(WebhookDelivery.session_id == session_id)).one()
        assert delivery.state == "delivered" and delivery.attempts == 1
        assert headers[ID_HEADER] == delivery.id  # the receiver's idempotency key, the same on every retry
        actions = db.scalars(
            select(AuditEvent.action).where(AuditEvent.session_id == session_id).order_by(AuditEvent.id)
        ).all()
    assert {"claim", "flag_decision", "flag_added", "outcome", "second_review", "api_read_review"} <= set(actions)


def test_a_returned_rules_violation_reopens_the_review(world: World) -> None:
    base = f"/review/sessions/{world.sessions['a']}"
    first, second = world.browser("reviewer_a"), world.browser("reviewer_a2")
    first.submit(f"{base}/claim")
    first.submit(f"{base}/outcome", outcome="Rules Violation", note="phone")
    second.submit(f"{base}/claim")
    assert second.submit(f"{base}/second-review", verdict="return").status_code == 422  # needs a reason
    assert second.submit(f"{base}/second-review", verdict="return", note="it is a calculator").is_success
    with world.context.db() as db:
        assert db.get(SessionReview, world.sessions["a"]) is None
    assert second.submit(f"{base}/claim").is_success
    assert second.submit(f"{base}/outcome", outcome="Clean").json()["status"] == "final"


def test_webhook_failures_are_retried_with_backoff_then_marked_failed(world: World) -> None:
    statuses = iter([503, 500])
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook() -> Response:
        return Response(status_code=next(statuses))

    base = f"/review/sessions/{world.sessions['a']}"
    sender = WebhookSender(world.context.db, webhook_policy(world.context, max_attempts=3, backoff_s=10))
    with BackgroundServer(receiver) as url:
        set_webhook(world.context, world.tenant_ids["a"], f"{url}/hook", new_secret())
        reviewer = world.browser("reviewer_a")
        reviewer.submit(f"{base}/claim")
        reviewer.submit(f"{base}/outcome", outcome="Clean")

        def delivery() -> WebhookDelivery:  # this session's: other tests' deliveries may share the database
            with world.context.db() as db:
                stmt = select(WebhookDelivery).where(WebhookDelivery.session_id == world.sessions["a"])
                return db.scalars(stmt).one()

        now = utcnow()  # the delivery is due from the moment the outcome is final
        sender.send_due(now)
        assert delivery().attempts == 1  # 503
        sender.send_due(now + timedelta(seconds=5))
        assert delivery().attempts == 1  # backing off: 10 s after the first failure
        sender.send_due(now + timedelta(seconds=11))
        assert delivery().attempts == 2  # 500
    # The receiver is gone: connection refused, the third and last attempt (20 s after the second).
    sender.send_due(now + timedelta(seconds=40))
    failed = delivery()
    assert failed.state == "failed" and failed.attempts == 3 and "Connect" in (failed.last_error or "")


def test_the_audit_trail_refuses_updates_and_deletes(world: World) -> None:
    world.browser("reviewer_a").page(f"/review/sessions/{world.sessions['a']}")
    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
        with world.context.db() as db, pytest.raises(Exception, match="append-only"):
            db.execute(text(statement))
            db.commit()


def test_officers_read_and_export_the_audit_trail_of_their_tenants_only(world: World) -> None:
    world.browser("reviewer_a").page(f"/review/sessions/{world.sessions['a']}")
    world.browser("reviewer_b").page(f"/review/sessions/{world.sessions['b']}")
    officer = world.browser("officer_a")
    exported = officer.get("/review/audit?format=csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert world.sessions["a"] in exported.text and world.sessions["b"] not in exported.text
    assert world.browser("reviewer_a").get("/review/audit").status_code == 403


def test_recordings_stream_with_http_range_and_each_access_is_logged(world: World) -> None:
    reviewer = world.browser("reviewer_a")
    path = f"/review/sessions/{world.sessions['a']}/media/webcam"
    whole = reviewer.get(path)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    part = reviewer.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    tail = reviewer.get(path, headers={"Range": "bytes=-10"})
    assert tail.content == whole.content[-10:]
    assert reviewer.get(path, headers={"Range": f"bytes={len(whole.content)}-"}).status_code == 416
    with world.context.db() as db:
        views = db.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "view_recording", AuditEvent.session_id == world.sessions["a"]
            )
        ).all()
    assert len(views) == 3 and all(v.actor == f"user:{world.users['reviewer_a']}" for v in views)


def test_a_reviewer_assigned_one_exam_sees_only_that_exam(world: World) -> None:
    with world.context.db() as db:
        slug_b = db.get(Tenant, world.tenant_ids["b"]).slug  # type: ignore[union-attr]
        user = add_user(db, f"exam-only-{world.users['admin']}", PASSWORD, Role.REVIEWER)
        assign(db, user, slug_b, "exam-b")
        db.commit()
        world.users["exam_only"] = user.username
    reviewer = world.browser("exam_only")
    queue = reviewer.page("/review/queue").text
    assert world.sessions["b"] in queue and world.sessions["a"] not in queue
    assert reviewer.get(f"/review/sessions/{world.sessions['a']}").status_code == 404
    assert reviewer.get(f"/review/sessions/{world.sessions['b']}").status_code == 200


def test_bulk_decisions_select_by_length_and_range_and_never_overwrite(world: World) -> None:
    reviewer = world.browser("reviewer_a")
    session_id = world.sessions["a"]
    base = f"/review/sessions/{session_id}"
    assert reviewer.submit(f"{base}/claim").is_success
    flags = {f.kind: f.id for f in db_flags(world, session_id)}
    assert reviewer.submit(f"{base}/flags/{flags['no_face']}/decision", decision="confirmed").is_success
    # 2 s long flags (no_face, multiple_faces) and a 1.6 s one (looking_away): shorter than 1.8 s is the last
    shorter = reviewer.submit(f"{base}/flags/bulk", decision="dismissed", shorter_than_s="1.8")
    assert shorter.json()["decided"] == 1
    ranged = reviewer.submit(f"{base}/flags/bulk", decision="dismissed", from_s="0", to_s="14", note="bulk")
    assert ranged.json()["decided"] == 1  # multiple_faces; no_face was decided already
    decided = {f.kind: d for f, d in db_decisions(world, session_id)}
    assert decided == {"no_face": "confirmed", "looking_away": "dismissed", "multiple_faces": "dismissed"}
    refused = reviewer.submit(f"{base}/flags/bulk", decision="dismissed", to_s="-1")
    assert refused.status_code == 422 and "0 seconds or more" in refused.json()["detail"]


def db_flags(world: World, session_id: str) -> list[FlagSegment]:
    with world.context.db() as db:
        return list(db.scalars(select(FlagSegment).where(FlagSegment.session_id == session_id)))


def db_decisions(world: World, session_id: str) -> list[tuple[FlagSegment, str]]:
    with world.context.db() as db:
        rows = db.execute(
            select(FlagSegment, FlagDecision.decision).join(FlagDecision, FlagDecision.segment_id == FlagSegment.id)
        ).all()
        return [(seg, decision) for seg, decision in rows if seg.session_id == session_id]


def test_reviewers_add_flags_of_their_own_kinds_and_the_platform_gets_them(world: World) -> None:
    """A phone is filed as a phone, not as looking_away: the add-flag form offers the reviewer-only kinds."""
    session_id = world.sessions["a"]
    base = f"/review/sessions/{session_id}"
    reviewer = world.browser("reviewer_a")
    assert reviewer.submit(f"{base}/claim").is_success
    form = reviewer.page(base).text.split('action="/review/sessions/' + session_id + '/flags"')[1].split("</form>")[0]
    assert all(f'<option value="{k}">' in form for k in ("phone", "another_voice", "notes", "other_person", "other"))
    assert '<option value="no_face">' in form  # the detector kinds, for what the detectors missed
    assert reviewer.submit(
        f"{base}/flags", kind="phone", start_s="8", end_s="10", note="phone in hand", note_shared="on"
    ).is_success
    assert reviewer.submit(f"{base}/flags", kind="another_voice", start_s="14", end_s="15").is_success
    refused = reviewer.submit(f"{base}/flags", kind="hair", start_s="1", end_s="2")
    assert refused.status_code == 422 and "phone" in refused.json()["detail"] and "no_face" in refused.json()["detail"]
    assert reviewer.submit(f"{base}/outcome", outcome="Suspicious", note="a phone, and a voice").is_success

    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['a']}"}) as platform:
        review = platform.get(f"/v1/sessions/{session_id}/review").json()
    added = {f["kind"]: (f["source"], f["decision"], f["note"], f["start_s"]) for f in review["flags"]}
    assert added["phone"] == ("reviewer", "confirmed", "phone in hand", 8.0)
    assert added["another_voice"] == ("reviewer", "confirmed", None, 14.0)  # no note shared
    assert review["version"] == 1 and [h["outcome"] for h in review["history"]] == ["Suspicious"]


def deliveries(world: World, session_id: str) -> list[tuple[str, dict[str, object]]]:
    with world.context.db() as db:
        rows = db.scalars(
            select(WebhookDelivery).where(WebhookDelivery.session_id == session_id).order_by(WebhookDelivery.created_at)
        ).all()
        return [(row.event, json.loads(row.body)["review"]) for row in rows]


def test_an_officer_reopens_a_final_review_for_appeal_and_the_platform_gets_each_version(world: World) -> None:
    set_webhook(world.context, world.tenant_ids["a"], "http://127.0.0.1:9/hook", new_secret())
    session_id = world.sessions["a"]
    base = f"/review/sessions/{session_id}"
    first, second, officer = world.browser("reviewer_a"), world.browser("reviewer_a2"), world.browser("officer_a")
    no_face = flag_ids(world, "a")[0]
    first.submit(f"{base}/claim")
    first.submit(f"{base}/flags/{no_face}/decision", decision="confirmed", note="empty chair", note_shared="on")
    first.submit(f"{base}/outcome", outcome="Rules Violation", note="left the room", note_shared="on")
    second.submit(f"{base}/claim")
    assert second.submit(f"{base}/second-review", verdict="confirm", note="agreed").json()["status"] == "final"
    platform = httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['a']}"})
    v1 = platform.get(f"/v1/sessions/{session_id}/review").json()
    assert (v1["version"], v1["under_appeal"], v1["outcome"]) == (1, False, "Rules Violation")

    # Only integrity officers reopen, only with a reason, and only a final review.
    refused = first.submit(f"{base}/reopen", reason="the student appeals")
    assert refused.status_code == 403 and "officers" in refused.json()["detail"]
    assert officer.submit(f"{base}/reopen", reason="  ").status_code == 422
    page = officer.page(base).text
    assert "Reopen for appeal" in page and 'data-version="1"' in page
    assert "Reopen for appeal" not in first.page(base).text
    reason = "appeal 17: the candidate fetched a prescribed inhaler"
    reopened = officer.submit(f"{base}/reopen", reason=reason)
    assert reopened.is_success and reopened.json()["reopened_version"] == 1
    assert officer.submit(f"{base}/reopen", reason=reason).status_code == 409  # no longer final

    # Back in the queue; the platform keeps version 1, as it was, marked under appeal.
    assert session_id in first.page("/review/queue").text
    assert reason in first.page(base).text
    appeal = platform.get(f"/v1/sessions/{session_id}/review").json()
    assert (appeal["final"], appeal["under_appeal"], appeal["version"], appeal["outcome"]) == (
        True, True, 1, "Rules Violation",
    )  # fmt: skip
    assert appeal["state"] == "in_review" and appeal["history"][0]["reopen_reason"] == reason
    assert appeal["history"][0]["reopened_at"].endswith("+00:00")

    # Decided again: a new Rules Violation still needs a second reviewer, and leaks nothing while it waits.
    assert first.submit(f"{base}/claim").is_success
    first.submit(f"{base}/flags/{no_face}/decision", decision="dismissed", note="inhaler, allowed")
    first.submit(f"{base}/outcome", outcome="Rules Violation", note="still away too long")
    waiting = platform.get(f"/v1/sessions/{session_id}/review").json()
    assert waiting["under_appeal"] and waiting["version"] == 1 and waiting["comments"][0]["text"] == "left the room"
    assert next(f for f in waiting["flags"] if f["id"] == no_face)["note"] == "empty chair"
    assert second.submit(f"{base}/claim").is_success
    returned = second.submit(f"{base}/second-review", verdict="return", note="an allowed aid; not a violation")
    assert returned.json()["status"] == "returned"
    assert second.submit(f"{base}/claim").is_success
    assert second.submit(f"{base}/outcome", outcome="Clean").json()["status"] == "final"

    v2 = platform.get(f"/v1/sessions/{session_id}/review").json()
    platform.close()
    assert (v2["version"], v2["under_appeal"], v2["outcome"], v2["state"]) == (2, False, "Clean", "reviewed")
    assert next(f for f in v2["flags"] if f["id"] == no_face)["decision"] == "dismissed"
    assert [(h["version"], h["outcome"], h["reopen_reason"]) for h in v2["history"]] == [
        (1, "Rules Violation", reason), (2, "Clean", None),
    ]  # fmt: skip
    sent = deliveries(world, session_id)
    assert [(event, body["version"], body["outcome"], body["under_appeal"]) for event, body in sent] == [
        ("review.final", 1, "Rules Violation", False),
        ("review.reopened", 1, "Rules Violation", True),
        ("review.final", 2, "Clean", False),
    ]
    with world.context.db() as db:
        events = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.session_id == session_id, AuditEvent.action.in_(["review_final", "review_reopened"]))
            .order_by(AuditEvent.seq)
        ).all()
        readable = readable_details(db, events)
    assert [(e.action, e.detail["version"]) for e in events] == [
        ("review_final", 1), ("review_reopened", 1), ("review_final", 2),
    ]  # fmt: skip
    assert "reason" not in events[1].detail and readable[events[1].id]["reason"] == reason  # kept beside the chain
