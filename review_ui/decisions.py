"""The write side of review: claims, flag decisions, added flags, the session outcome and the second review.

Every change is checked against the claim (one reviewer at a time), written with an audit event in the
same transaction, and a final outcome enqueues the platform's webhook in that transaction too, so a
decision and its notification cannot part ways. Each note is internal unless its reviewer shares it with
the platform (`shared`); `review_ui.results` leaves out the others.

Each final outcome is a version (`ReviewOutcome`). An integrity officer may reopen a final review for an
appeal, with a reason: the session goes back to the queue (in review, unclaimed, no outcome), keeping its
flag decisions for the next reviewer to revise, and is re-scored from its stored signals under the exam's current
policy (a policy changed since the decision applies now; flags it no longer raises keep their decisions in the
flag version). It is decided again under the same rules (a Rules Violation still needs a second reviewer). Its
next final outcome is the next version. What the platform sees meanwhile is set out in `review_ui.results`.

Claiming is one conditional UPDATE (free, expired, or already mine), which is atomic on SQLite and
PostgreSQL alike: two reviewers racing for a session cannot both win.

One outcome has no person behind it: an exam's auto-clear (`review_ui.auto_clear`) finalises a session the
detectors found nothing in as Clean through `clear_by_system`, with the system actor's name where a reviewer's id
would be, and the platform is told exactly as for a reviewer's Clean.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from core import audit
from core.audit_texts import FreeText
from core.rescoring import queue_rescores
from core.states import SessionState
from core.tables import ExamSession, FlagDecision, FlagSegment, ReviewOutcome, SessionReview, Tenant, User
from core.vocabulary import AddedFlagKind, Decision, FlagKind, FlagSource, Outcome, ReviewStatus, Role
from review_ui.results import flags_with_decisions, outcome_versions, review_result
from review_ui.webhooks import enqueue, enqueue_session_callbacks

REVIEWABLE = (SessionState.PROCESSED.value, SessionState.IN_REVIEW.value)
REOPENERS = frozenset({Role.OFFICER, Role.ADMIN})
"""Who may reopen a final review for an appeal: integrity officers, and admins."""


class ReviewRefused(Exception):
    """A review action that is not allowed now; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Actor:
    user: User
    ip: str | None

    @property
    def name(self) -> str:
        return f"user:{self.user.username}"


def claim(db: Session, session: ExamSession, actor: Actor, now: datetime, ttl: timedelta) -> None:
    """Lock the session for `actor` until now + ttl (or extend their claim). Raises if someone else holds it."""
    if session.state not in REVIEWABLE:
        raise ReviewRefused(409, f"this session is {session.state}; only processed sessions can be reviewed")
    review = db.get(SessionReview, session.id)
    if review is not None and review.status == ReviewStatus.AWAITING_SECOND and review.reviewer_id == actor.user.id:
        raise ReviewRefused(403, "you set this Rules Violation; a different reviewer must confirm it (four eyes)")
    if not take_claim(db, session, actor.user.id, now, ttl):
        raise ReviewRefused(409, "another reviewer is reviewing this session; pick another one from the queue")
    audit.record(db, actor.name, "claim", at=now, tenant_id=session.tenant_id, session_id=session.id, ip=actor.ip)


def take_claim(db: Session, session: ExamSession, user_id: str, now: datetime, ttl: timedelta) -> bool:
    """Give `user_id` the session's claim until now + ttl, where it is free, expired or already theirs, and move a
    processed session into review; False (the transaction rolled back) where someone else holds it. One
    conditional UPDATE: of two people claiming at once, one wins whole."""
    won = db.execute(
        update(ExamSession)
        .where(
            ExamSession.id == session.id,
            ExamSession.state.in_(REVIEWABLE),
            or_(
                ExamSession.claimed_by.is_(None),
                ExamSession.claimed_by == user_id,
                ExamSession.claim_expires_at <= now,
            ),
        )
        .values(claimed_by=user_id, claim_expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        return False
    db.refresh(session)
    if session.state == SessionState.PROCESSED.value:
        db.add(session.move_to(SessionState.IN_REVIEW))
    return True


def release(db: Session, session: ExamSession, actor: Actor, now: datetime) -> None:
    if session.claimed_by == actor.user.id:
        session.claimed_by, session.claim_expires_at = None, None
        audit.record(db, actor.name, "release", at=now, tenant_id=session.tenant_id, session_id=session.id, ip=actor.ip)


def _require_claim(session: ExamSession, actor: Actor, now: datetime) -> None:
    if session.claimed_by != actor.user.id or session.claim_expires_at is None or session.claim_expires_at <= now:
        raise ReviewRefused(409, "claim this session first (your claim may have expired)")
    if session.state != SessionState.IN_REVIEW.value:
        raise ReviewRefused(409, f"this session is {session.state}, not in review")


def _require_open(db: Session, session: ExamSession) -> None:
    review = db.get(SessionReview, session.id)
    if review is not None:
        raise ReviewRefused(409, f"the outcome is already set ({review.outcome}, {review.status}); flags are locked")


def decide_flag(
    db: Session,
    session: ExamSession,
    segment_id: str,
    decision: Decision,
    note: str,
    actor: Actor,
    now: datetime,
    *,
    shared: bool = False,
) -> None:
    _require_claim(session, actor, now)
    _require_open(db, session)
    segment = db.get(FlagSegment, segment_id)
    if segment is None or segment.session_id != session.id:
        raise ReviewRefused(404, "no such flag in this session")
    row = db.get(FlagDecision, segment_id)
    if row is None:
        row = FlagDecision(segment_id=segment_id, session_id=session.id, decision=decision.value)
        db.add(row)
    row.decision, row.note, row.reviewer_id, row.decided_at = decision.value, note.strip(), actor.user.id, now
    row.note_shared = shared
    audit.record(
        db,
        actor.name,
        "flag_decision",
        at=now,
        tenant_id=session.tenant_id,
        session_id=session.id,
        ip=actor.ip,
        flag=segment_id,
        kind=segment.kind,
        decision=decision.value,
        note=FreeText(note.strip()),
        note_shared=shared,
    )


@dataclass(frozen=True)
class FlagSelection:
    """Which undecided flags a bulk decision applies to; every field left None matches all."""

    kind: FlagKind | None = None
    shorter_than_s: float | None = None
    from_s: float | None = None  # flags that start at or after
    to_s: float | None = None  # flags that end at or before

    def matches(self, segment: FlagSegment) -> bool:
        start_s, end_s = segment.start_ms / 1000, segment.end_ms / 1000
        return (
            (self.kind is None or segment.kind == self.kind)
            and (self.shorter_than_s is None or end_s - start_s < self.shorter_than_s)
            and (self.from_s is None or start_s >= self.from_s)
            and (self.to_s is None or end_s <= self.to_s)
        )


def decide_many(
    db: Session,
    session: ExamSession,
    which: FlagSelection,
    decision: Decision,
    note: str,
    actor: Actor,
    now: datetime,
    *,
    shared: bool = False,
) -> int:
    """Confirm or dismiss every undecided flag that `which` selects (each audited as one decision); a decision
    a reviewer already made is never overwritten. Returns how many flags were decided."""
    _require_claim(session, actor, now)
    _require_open(db, session)
    chosen = [seg for seg, made in flags_with_decisions(db, session.id) if made is None and which.matches(seg)]
    for segment in chosen:
        decide_flag(db, session, segment.id, decision, note, actor, now, shared=shared)
    return len(chosen)


def undo_decision(db: Session, session: ExamSession, segment_id: str, actor: Actor, now: datetime) -> None:
    """Take back the decision on one flag (it is undecided again); the audit trail keeps both steps."""
    _require_claim(session, actor, now)
    _require_open(db, session)
    row = db.get(FlagDecision, segment_id)
    if row is None or row.session_id != session.id:
        raise ReviewRefused(404, "this flag has no decision to undo")
    db.delete(row)
    audit.record(
        db, actor.name, "flag_decision_undone", at=now, tenant_id=session.tenant_id, session_id=session.id,
        ip=actor.ip, flag=segment_id, decision=row.decision,
    )  # fmt: skip


def add_flag(
    db: Session,
    session: ExamSession,
    kind: AddedFlagKind,
    start_s: float,
    end_s: float,
    note: str,
    actor: Actor,
    now: datetime,
    *,
    shared: bool = False,
) -> FlagSegment:
    """A flag the detectors missed, of a detector's kind or one only reviewers add (a phone, another voice, ...);
    it is confirmed by the reviewer who adds it."""
    _require_claim(session, actor, now)
    _require_open(db, session)
    duration = session.duration_s
    if not 0 <= start_s < end_s or (duration is not None and end_s > duration + 0.001):
        limit = f" and end by {duration:.1f} s" if duration is not None else ""
        raise ReviewRefused(422, f"a flag needs 0 <= start < end{limit}; got {start_s} to {end_s}")
    start_ms, end_ms = round(start_s * 1000), round(end_s * 1000)
    segment = FlagSegment(
        session_id=session.id,
        kind=kind.value,
        start_ms=start_ms,
        end_ms=end_ms,
        score=1.0,
        peak_ms=(start_ms + end_ms) // 2,
        evidence_keys=[],
        detector_versions={},
        pipeline_version=session.pipeline_version or "",
        source=FlagSource.REVIEWER.value,
        created_by=actor.user.id,
    )
    db.add(segment)
    db.flush()
    db.add(
        FlagDecision(
            segment_id=segment.id,
            session_id=session.id,
            decision=Decision.CONFIRMED.value,
            note=note.strip(),
            note_shared=shared,
            reviewer_id=actor.user.id,
            decided_at=now,
        )
    )
    audit.record(
        db,
        actor.name,
        "flag_added",
        at=now,
        tenant_id=session.tenant_id,
        session_id=session.id,
        ip=actor.ip,
        flag=segment.id,
        kind=kind.value,
        start_s=start_s,
        end_s=end_s,
        note=FreeText(note.strip()),
        note_shared=shared,
    )
    return segment


def set_outcome(
    db: Session, session: ExamSession, outcome: Outcome, note: str, actor: Actor, now: datetime, *, shared: bool = False
) -> ReviewStatus:
    """Record the outcome; returns the review status (`final`, or `awaiting_second` for a Rules Violation)."""
    _require_claim(session, actor, now)
    _require_open(db, session)
    note = note.strip()
    if outcome is not Outcome.CLEAN and not note:
        raise ReviewRefused(422, f"a note is required for {outcome.value}: say what you saw")
    status = ReviewStatus.AWAITING_SECOND if outcome is Outcome.RULES_VIOLATION else ReviewStatus.FINAL
    review = SessionReview(
        session_id=session.id,
        outcome=outcome.value,
        note=note,
        note_shared=shared,
        status=status.value,
        reviewer_id=actor.user.id,
        decided_at=now,
        finalised_at=now if status is ReviewStatus.FINAL else None,
    )
    db.add(review)
    session.claimed_by, session.claim_expires_at = None, None
    audit.record(
        db,
        actor.name,
        "outcome",
        at=now,
        tenant_id=session.tenant_id,
        session_id=session.id,
        ip=actor.ip,
        outcome=outcome.value,
        status=status.value,
        note=FreeText(note),
        note_shared=shared,
    )
    if status is ReviewStatus.FINAL:
        _finalise(db, session, review, actor.name, actor.ip, now)
    return status


def second_review(
    db: Session, session: ExamSession, confirm: bool, note: str, actor: Actor, now: datetime, *, shared: bool = False
) -> ReviewStatus | Literal["returned"]:
    """A second, different reviewer confirms a Rules Violation (final) or returns it for a new decision."""
    _require_claim(session, actor, now)
    review = db.get(SessionReview, session.id)
    if review is None or review.status != ReviewStatus.AWAITING_SECOND:
        raise ReviewRefused(409, "this session has no Rules Violation awaiting a second review")
    if review.reviewer_id == actor.user.id:
        raise ReviewRefused(403, "the second review must be done by a different reviewer (four eyes)")
    note = note.strip()
    if not confirm and not note:
        raise ReviewRefused(422, "say why you do not confirm the Rules Violation")
    audit.record(
        db,
        actor.name,
        "second_review",
        at=now,
        tenant_id=session.tenant_id,
        session_id=session.id,
        ip=actor.ip,
        confirmed=confirm,
        note=FreeText(note),
        note_shared=shared,
        first_reviewer=review.reviewer_id,
    )
    session.claimed_by, session.claim_expires_at = None, None
    if not confirm:
        db.delete(review)  # back to an open review; the audit trail keeps both opinions
        return "returned"
    review.status, review.second_reviewer_id, review.second_note = ReviewStatus.FINAL.value, actor.user.id, note
    review.second_note_shared = shared
    review.finalised_at = now
    _finalise(db, session, review, actor.name, actor.ip, now)
    return ReviewStatus.FINAL


def clear_by_system(db: Session, session: ExamSession, system: str, now: datetime, grounds: Mapping[str, Any]) -> None:
    """Finalise an unreviewed, unclaimed session as Clean with no person deciding: `system` (``system:auto_clear``)
    stands where a reviewer would, `grounds` (what it applied) go to the audit trail, and the platform is
    told as for a reviewer's Clean. The caller has made sure no reviewer can take the session meanwhile."""
    if session.state != SessionState.PROCESSED.value or session.claimed_by is not None:
        raise ReviewRefused(
            409, f"only an unclaimed processed session is cleared by the system; this one is {session.state}"
        )
    _require_open(db, session)
    db.add(session.move_to(SessionState.IN_REVIEW))
    review = SessionReview(
        session_id=session.id, outcome=Outcome.CLEAN.value, note="", status=ReviewStatus.FINAL.value,
        reviewer_id=None, decided_by_system=system, decided_at=now, finalised_at=now,
    )  # fmt: skip
    db.add(review)
    audit.record(
        db, system, "outcome", at=now, tenant_id=session.tenant_id, session_id=session.id,
        outcome=Outcome.CLEAN.value, status=ReviewStatus.FINAL.value, note="", note_shared=False, grounds=dict(grounds),
    )  # fmt: skip
    _finalise(db, session, review, system, None, now)


def reopen(db: Session, session: ExamSession, reason: str, actor: Actor, now: datetime) -> int:
    """Reopen a final review for an appeal (integrity officers and admins, with a reason): the session is back
    in the review queue and its outcome is open again. Returns the version reopened; the platform is told."""
    if actor.user.role not in REOPENERS:
        raise ReviewRefused(403, "only integrity officers and admins reopen a final review")
    reason = reason.strip()
    if not reason:
        raise ReviewRefused(422, "say why the review is reopened: the appeal and its grounds")
    review = db.get(SessionReview, session.id)
    versions = outcome_versions(db, session.id)
    if session.state != SessionState.REVIEWED.value or review is None or review.status != ReviewStatus.FINAL:
        raise ReviewRefused(409, f"only a final review can be reopened; this session is {session.state}")
    if not versions:
        raise ReviewRefused(409, "this final outcome has no version to reopen; run `proctor migrate` (0010)")
    latest = versions[-1]
    kept = review_result(db, session).model_dump(mode="json")  # what the platform goes on seeing meanwhile
    won = db.execute(  # one conditional UPDATE: two officers reopening at once cannot both win
        update(ReviewOutcome)
        .where(
            ReviewOutcome.session_id == session.id,
            ReviewOutcome.version == latest.version,
            ReviewOutcome.reopened_at.is_(None),
        )
        .values(reopened_by=actor.user.id, reopen_reason=reason, reopened_at=now, platform_result=kept)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        raise ReviewRefused(409, "someone reopened this review a moment ago; reload the page")
    db.delete(review)  # open again; the flag decisions stay for the next reviewer to revise
    db.add(session.move_to(SessionState.IN_REVIEW))
    queue_rescores(db, [session.id])  # decided again on the flags the exam's current policy raises
    session.claimed_by, session.claim_expires_at = None, None
    audit.record(
        db, actor.name, "review_reopened", at=now, tenant_id=session.tenant_id, session_id=session.id,
        ip=actor.ip, version=latest.version, outcome=latest.outcome, reason=FreeText(reason),
    )  # fmt: skip
    _notify(db, session, "review.reopened", now)
    return latest.version


def _finalise(db: Session, session: ExamSession, review: SessionReview, by: str, ip: str | None, now: datetime) -> None:
    """The outcome is final: the session is reviewed, the outcome is its next version, the platform is told. `by`
    is the audit trail's actor: a reviewer's `Actor.name`, or a system actor's."""
    db.flush()
    versions = outcome_versions(db, session.id)
    version = versions[-1].version + 1 if versions else 1
    db.add(
        ReviewOutcome(
            session_id=session.id,
            version=version,
            outcome=review.outcome,
            decided_by=review.reviewer_id,
            decided_by_system=review.decided_by_system,
            second_by=review.second_reviewer_id,
            decided_at=now,
        )
    )
    db.add(session.move_to(SessionState.REVIEWED))
    audit.record(
        db, by, "review_final", at=now, tenant_id=session.tenant_id, session_id=session.id, ip=ip,
        version=version, outcome=review.outcome,
    )  # fmt: skip
    _notify(db, session, "review.final", now)


def _notify(db: Session, session: ExamSession, event: str, now: datetime) -> None:
    """Owe the platform a webhook with the review as `GET /v1/sessions/{id}/review` now gives it, and the same
    body to each callback the session registered for the event (`SessionCallback`)."""
    db.flush()
    tenant = db.get(Tenant, session.tenant_id)
    if tenant is not None:
        result = review_result(db, session).model_dump(mode="json")
        body = json.dumps({"event": event, "review": result}, sort_keys=True)
        enqueue(db, tenant, session.id, event, body, now)
        enqueue_session_callbacks(db, tenant.id, session.id, event, body, now)  # e.g. an LMS's `reviewed`
