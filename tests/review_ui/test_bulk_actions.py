"""The queue's bulk actions over HTTP (issue 20): Mark Clean, Assign and Release on the ticked sessions, each
refused per session with the reason, the summary the queue shows afterwards, and what each leaves behind
(outcome versions, claims, audit entries, webhooks). Assertions are on the sessions each test made."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select

from core.db import utcnow
from core.states import SessionState
from core.tables import (
    AuditEvent,
    ExamSession,
    FlagDecision,
    FlagSegment,
    ReviewOutcome,
    SessionReview,
    User,
    WebhookDelivery,
)
from core.vocabulary import Decision
from review_ui.bulk_actions import MAX_SESSIONS, SELECT_PREFIX
from review_ui.webhooks import new_secret
from tests.review_ui.conftest import Browser, World, set_webhook


def add_session(world: World, label: str, *, flags: int = 0, dismissed: bool = False, qc_sample: bool = False) -> str:
    """A processed session of tenant `label`'s exam, with `flags` detector flags (dismissed by a reviewer, or
    undecided), as processing and review would leave it."""
    with world.context.db() as db:
        first = db.get(ExamSession, world.sessions[label])
        assert first is not None
        session = ExamSession(
            tenant_id=first.tenant_id, exam_id=first.exam_id, candidate_id=f"c-{uuid.uuid4().hex[:6]}",
            attempt_id=uuid.uuid4().hex[:8], started_at=first.started_at, state=SessionState.PROCESSED.value,
            duration_s=24.0, risk_score=0.2 if flags else 0.0, review_priority="low", processed_at=utcnow(),
            qc_sample=qc_sample,
        )  # fmt: skip
        db.add(session)
        db.flush()
        for n in range(flags):
            segment = FlagSegment(
                session_id=session.id, kind="looking_away", start_ms=n * 5000, end_ms=n * 5000 + 2000, score=0.6,
                peak_ms=n * 5000 + 500, evidence_keys=[], pipeline_version="1",
            )  # fmt: skip
            db.add(segment)
            db.flush()
            if dismissed:
                db.add(FlagDecision(segment_id=segment.id, session_id=session.id, decision=Decision.DISMISSED.value))
        db.commit()
        return session.id


def bulk(browser: Browser, action: str, session_ids: list[str], **fields: str) -> httpx.Response:
    ticked = {f"{SELECT_PREFIX}{i}": "on" for i in session_ids}
    return browser.submit("/review/queue/bulk", action=action, **ticked, **fields)


def candidate(world: World, session_id: str) -> str:
    with world.context.db() as db:
        session = db.get(ExamSession, session_id)
        assert session is not None
        return session.candidate_id


def user_id(world: World, label: str) -> str:
    with world.context.db() as db:
        found = db.scalar(select(User.id).where(User.username == world.users[label]))
        assert found is not None
        return found


def claim_for(world: World, label: str, session_id: str) -> None:
    with world.context.db() as db:
        session = db.get(ExamSession, session_id)
        assert session is not None
        session.claimed_by, session.claim_expires_at = user_id(world, label), utcnow() + timedelta(minutes=20)
        db.add(session.move_to(SessionState.IN_REVIEW))
        db.commit()


def test_mark_clean_decides_only_sessions_with_nothing_left_to_look_at(world: World) -> None:
    set_webhook(world.context, world.tenant_ids["a"], "https://platform.example/hook", new_secret())
    empty, all_dismissed = add_session(world, "a"), add_session(world, "a", flags=2, dismissed=True)
    undecided, sample = world.sessions["a"], add_session(world, "a", qc_sample=True)
    taken = add_session(world, "a")
    claim_for(world, "reviewer_a2", taken)
    other_tenant = world.sessions["b"]
    ticked = [empty, all_dismissed, undecided, sample, taken, other_tenant]

    answer = bulk(world.browser("reviewer_a"), "clean", ticked)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["done"] == [empty, all_dismissed]
    reasons = {s["session"]: s["reason"] for s in body["skipped"]}
    assert reasons == {
        undecided: "has undecided flags: open it",
        sample: "is a QC sample of the exam's auto-clear: open it and review it",
        taken: f"is claimed by {world.users['reviewer_a2']}",
        other_tenant: "was not found",
    }
    assert body["summary"].startswith(
        f"Marked Clean 2; skipped 4: {candidate(world, undecided)} has undecided flags: open it; "
    )
    assert f"session {other_tenant} was not found" in body["summary"], "another tenant's candidate is not shown"

    reviewer = f"user:{world.users['reviewer_a']}"
    with world.context.db() as db:
        for session_id in (empty, all_dismissed):
            review = db.get(SessionReview, session_id)
            assert review is not None and (review.outcome, review.status) == ("Clean", "final")
            assert review.reviewer_id == user_id(world, "reviewer_a") and review.decided_by_system is None
            version = db.scalar(select(ReviewOutcome).where(ReviewOutcome.session_id == session_id))
            assert version is not None and version.version == 1
            trail = db.scalars(
                select(AuditEvent.action).where(AuditEvent.session_id == session_id).order_by(AuditEvent.seq)
            ).all()
            assert trail == ["claim", "outcome", "review_final"], "the path of one reviewer's Clean"
            delivery = db.scalar(select(WebhookDelivery).where(WebhookDelivery.session_id == session_id))
            assert delivery is not None and delivery.event == "review.final" and '"outcome": "Clean"' in delivery.body
        for session_id in (undecided, sample, taken, other_tenant):
            assert db.get(SessionReview, session_id) is None
        left = db.get(ExamSession, undecided)
        assert left is not None and (left.state, left.claimed_by) == ("processed", None), "its claim was rolled back"
        assert db.scalar(select(AuditEvent).where(AuditEvent.session_id == undecided)) is None
        untouched = db.get(ExamSession, taken)
        assert untouched is not None and untouched.claimed_by == user_id(world, "reviewer_a2")
        entry = db.scalar(select(AuditEvent).where(AuditEvent.action == "bulk_action", AuditEvent.actor == reviewer))
        assert entry is not None and (entry.detail["bulk"], entry.detail["done"], entry.detail["skipped"]) == (
            "clean", 2, 4,
        )  # fmt: skip
        assert entry.detail["sessions_done"] == [empty, all_dismissed]


def test_a_session_with_a_confirmed_flag_is_left_for_its_reviewer_to_decide(world: World) -> None:
    confirmed = add_session(world, "a", flags=1)
    with world.context.db() as db:
        segment_id = db.scalar(select(FlagSegment.id).where(FlagSegment.session_id == confirmed))
        assert segment_id is not None
        db.add(FlagDecision(segment_id=segment_id, session_id=confirmed, decision=Decision.CONFIRMED.value))
        db.commit()
    body = bulk(world.browser("reviewer_a"), "clean", [confirmed]).json()
    assert body["done"] == [] and body["skipped"][0]["reason"] == "has confirmed flags: open it to set its outcome"


def test_officers_assign_within_the_reviewers_scope_and_never_over_a_live_claim(world: World) -> None:
    free, taken, theirs = add_session(world, "a"), add_session(world, "a"), add_session(world, "a")
    claim_for(world, "reviewer_a2", taken)
    claim_for(world, "reviewer_a", theirs)  # already the assignee's: extended
    reviewer_a = user_id(world, "reviewer_a")
    officer = world.browser("officer_a")

    before = utcnow()
    body = bulk(officer, "assign", [free, taken, theirs, world.sessions["b"]], assignee=reviewer_a).json()
    assert body["done"] == [free, theirs]
    reasons = {s["session"]: s["reason"] for s in body["skipped"]}
    assert reasons[taken].startswith(f"is claimed by {world.users['reviewer_a2']}")
    assert reasons[world.sessions["b"]] == "was not found"
    assert body["summary"].startswith(f"Assigned 2 to {world.users['reviewer_a']}; skipped 2")
    with world.context.db() as db:
        for session_id in (free, theirs):
            session = db.get(ExamSession, session_id)
            assert session is not None and session.claimed_by == reviewer_a
            assert session.state == SessionState.IN_REVIEW.value and session.claim_expires_at is not None
            assert timedelta(hours=7, minutes=59) < session.claim_expires_at - before < timedelta(hours=8, minutes=1)
        entry = db.scalar(
            select(AuditEvent).where(AuditEvent.action == "review_assigned", AuditEvent.session_id == free)
        )
        assert entry is not None and entry.actor == f"user:{world.users['officer_a']}"
        assert entry.detail["to"] == f"user:{world.users['reviewer_a']}"
        kept = db.get(ExamSession, taken)
        assert kept is not None and kept.claimed_by == user_id(world, "reviewer_a2")

    # The assignee sees it as theirs to continue; someone who may not see the exam is refused per session.
    assert "Continue your review" in world.browser("reviewer_a").page("/review/queue?status=in_review").text
    outside = bulk(officer, "assign", [add_session(world, "a")], assignee=user_id(world, "reviewer_b")).json()
    assert outside["done"] == [] and "is outside" in outside["skipped"][0]["reason"]


def test_only_officers_and_admins_assign_and_the_request_is_checked_whole(world: World) -> None:
    session_id = add_session(world, "a")
    reviewer = world.browser("reviewer_a")
    refused = bulk(reviewer, "assign", [session_id], assignee=user_id(world, "reviewer_a2"))
    assert refused.status_code == 403 and "integrity officers and admins" in refused.json()["detail"]
    too_many = [uuid.uuid4().hex for _ in range(MAX_SESSIONS + 1)]
    over = bulk(reviewer, "clean", too_many)
    assert over.status_code == 422 and f"at most {MAX_SESSIONS} sessions" in over.json()["detail"]
    assert bulk(reviewer, "clean", []).status_code == 422
    assert bulk(reviewer, "delete", [session_id]).status_code == 422
    officer = world.browser("officer_a")
    assert bulk(officer, "assign", [session_id]).json()["detail"] == "choose the reviewer to assign the sessions to"
    assert bulk(officer, "assign", [session_id], assignee="nobody").status_code == 422
    no_token = reviewer.post("/review/queue/bulk", data={"action": "clean", f"{SELECT_PREFIX}{session_id}": "on"})
    assert no_token.status_code == 403
    with world.context.db() as db:
        session = db.get(ExamSession, session_id)
        assert session is not None and session.claimed_by is None and db.get(SessionReview, session_id) is None


def test_reviewers_release_their_own_claims_and_officers_anyones(world: World) -> None:
    mine, theirs, free = add_session(world, "a"), add_session(world, "a"), add_session(world, "a")
    claim_for(world, "reviewer_a", mine)
    claim_for(world, "reviewer_a2", theirs)
    body = bulk(world.browser("reviewer_a"), "release", [mine, theirs, free]).json()
    assert body["done"] == [mine]
    reasons = {s["session"]: s["reason"] for s in body["skipped"]}
    assert reasons[theirs] == f"is claimed by {world.users['reviewer_a2']}: only they or an officer can release it"
    assert reasons[free] == "is not claimed: nothing to release"
    assert bulk(world.browser("officer_a"), "release", [theirs]).json()["done"] == [theirs]
    with world.context.db() as db:
        for session_id in (mine, theirs):
            session = db.get(ExamSession, session_id)
            assert session is not None and session.claimed_by is None
        entry = db.scalar(select(AuditEvent).where(AuditEvent.action == "release", AuditEvent.session_id == theirs))
        assert entry is not None and entry.actor == f"user:{world.users['officer_a']}"
        assert entry.detail["claim_of"] == f"user:{world.users['reviewer_a2']}"


def test_without_javascript_the_form_posts_and_the_queue_shows_the_summary_to_its_author_only(world: World) -> None:
    clean, undecided = add_session(world, "a"), world.sessions["a"]
    reviewer = world.browser("reviewer_a")
    page = reviewer.page("/review/queue?kind=&exam=").text
    assert f'name="{SELECT_PREFIX}{clean}"' in page and 'form="bulk"' in page
    assert '<option value="assign">' not in page, "reviewers do not assign"
    back = re.search(r'name="back" value="([^"]+)"', page)
    assert back is not None
    posted = reviewer.post(
        "/review/queue/bulk",
        data={
            "csrf_token": reviewer.csrf, "action": "clean", "back": back[1].replace("&amp;", "&"),
            f"{SELECT_PREFIX}{clean}": "on", f"{SELECT_PREFIX}{undecided}": "on",
        },
    )  # fmt: skip
    assert posted.status_code == 303
    location = posted.headers["location"]
    assert location.startswith("/review/queue?status=to_review&bulk=")
    shown = reviewer.page(location).text
    summary = re.search(r'<p class="bulk-summary" id="bulk-summary" role="status">([^<]*)</p>', shown)
    assert summary is not None
    assert summary[1] == f"Marked Clean 1; skipped 1: {candidate(world, undecided)} has undecided flags: open it"
    assert 'id="bulk-summary"' not in world.browser("reviewer_a2").page(location).text, "only its author's"
    hostile = reviewer.post(
        "/review/queue/bulk",
        data={"csrf_token": reviewer.csrf, "action": "release", "back": "https://evil.example/", "select.x": "on"},
    )
    assert hostile.headers["location"].startswith("/review/queue?"), "back only ever leads to the queue"


def test_the_officer_queue_offers_the_people_who_may_review_its_platform(world: World) -> None:
    page = world.browser("officer_a").page("/review/queue").text
    options = dict(re.findall(r'<option value="([0-9a-f]{32})">([^<]+)</option>', page))
    names = set(options.values())
    assert {world.users["reviewer_a"], world.users["reviewer_a2"], world.users["officer_a"]} <= names
    assert world.users["admin"] in names and world.users["reviewer_b"] not in names
    assert '<option value="assign">Assign to...</option>' in page
