"""Erasure and retention: recordings are biometric data, erased on request or when the retention period ends.

Erasing a session removes every object under its prefix (recordings, event log, signals, evidence frames)
and any unfinished upload; the row stays, marked deleted with the reason, so reports and the audit trail
keep the decision without the biometric data. The session's open jobs are failed first, in the same
transaction, so a worker publishing meanwhile is fenced out and removes what it wrote.

Retention: a session's clock starts when its review became final (the platform has its outcome, and appeals
work from the decision and the audit trail), or, for a session never finally reviewed (rejected, failed,
abandoned, still waiting), when it was created: the period is a maximum, not a minimum.

What reviewers and officers wrote goes too: free text may name the candidate. Their notes (an accommodation's
too, and those kept with a re-scoring's dropped decisions) become `ERASED_NOTE`, the review
result kept for an appeal loses its notes and comments, and every webhook body about the session becomes
`ERASED_WEBHOOK_BODY` (one not yet delivered is not sent: it fails, saying why). The outcome and each flag's
decision stay. The audit trail stays as recorded (append-only, hash-chained), but the free text it refers to is
kept beside the chain and is erased too; the entries' commitments to it stay, and say nothing without it
(`core.audit_texts`). Entries recorded before migration 0017 hold their text and keep it.

Retention erases each expired session in a transaction of its own and goes on past one that fails (S3 down for
a moment, a row it cannot read), reporting it (`RetentionRun.failed`); the next run tries it again. Objects
that an erasure could not reach (a worker killed while writing) are `core.erasure_sweep`'s.

Enrolments (a candidate's reference faces) belong to the candidate, not to the session that uploaded them:
erasing a session keeps an accepted enrolment (later exams reuse it) but removes a refused or unfinished
one. `core.enrolments.erase_candidate` erases a candidate's enrolments with all their sessions; retention
erases an enrolment once it is older than the period and no live session within the period uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core import audit
from core.audit_texts import ERASED_TEXT, erase_session_texts
from core.db import utcnow
from core.jobs import fail_open_jobs
from core.states import SessionState
from core.tables import (
    Accommodation,
    CandidateEnrolment,
    ExamSession,
    FlagDecision,
    FlagVersion,
    ReviewOutcome,
    SessionReview,
    WebhookDelivery,
)
from core.vocabulary import ENROLMENT_KINDS, DeliveryState, ReviewStatus
from storage.keys import SessionPrefix
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)

ERASED_BY_RETENTION = "system:retention"
ERASED_NOTE = ERASED_TEXT  # one wording wherever free text was erased
ERASED_WEBHOOK_BODY = '{"erased": true}'


def erase_session(
    db: Session, store: ObjectStore, session: ExamSession, *, erased_by: str, code: str, reason: str
) -> int:
    """Erase a live session's objects and mark it deleted, in the caller's transaction (the caller commits).

    Returns how many objects were removed. The erasure is written to the audit trail by `erased_by`; the
    caller logs it once committed.
    """
    prefix = SessionPrefix(session.tenant.slug, session.exam.external_id, session.id).prefix
    # Fail the session's jobs before deleting anything. The UPDATE holds their rows (PostgreSQL) or the
    # write lock (SQLite) until the caller commits, so a worker publishing results meanwhile either committed
    # first (its objects are already there to delete) or waits, then fails its lease check and deletes
    # what it wrote: no evidence frame or signal outlives the erasure.
    fail_open_jobs(db, session.id, "session deleted")
    for media in session.media:
        if media.upload_id is not None:
            # Explicitly: MinIO lists unfinished uploads only by exact key, not by prefix (minio#11686).
            store.abort_multipart(media.object_key, media.upload_id)
    removed = store.delete_prefix(prefix)
    db.add(session.move_to(SessionState.DELETED, code=code, reason=reason))
    session.deleted_at = utcnow()
    db.flush()  # the session row is now locked (PostgreSQL): an enrolment being accepted waits, then sees it deleted
    removed += _erase_unaccepted_enrolments(db, store, session)
    _scrub_free_text(db, session.id)
    audit.record(
        db,
        erased_by,
        "erase",
        at=session.deleted_at,
        tenant_id=session.tenant_id,
        session_id=session.id,
        code=code,
        reason=reason,
        objects_removed=removed,
    )
    for media in session.media:
        media.upload_id = None
    return removed


def _erase_unaccepted_enrolments(db: Session, store: ObjectStore, session: ExamSession) -> int:
    """Delete the session's enrolment files that are not an accepted enrolment (refused, or never finished).

    They live under the candidate's prefix, not the session's; an accepted one is the candidate's and stays.
    """
    accepted = set(db.scalars(select(CandidateEnrolment.object_key).where(CandidateEnrolment.session_id == session.id)))
    removed = 0
    for media in session.media:
        if media.kind in ENROLMENT_KINDS and media.object_key not in accepted:
            if store.stat(media.object_key) is not None:
                removed += 1
            store.delete(media.object_key)  # also where a versioned bucket keeps only older versions
    return removed


def _scrub_free_text(db: Session, session_id: str) -> None:
    """Replace what reviewers wrote about the session, and the webhook bodies that carried it (see the module)."""
    for note in (FlagDecision.note, SessionReview.note, SessionReview.second_note, Accommodation.note):
        owner = note.class_
        db.execute(update(owner).where(owner.session_id == session_id, note != "").values({note.key: ERASED_NOTE}))
    for flags in db.scalars(select(FlagVersion).where(FlagVersion.session_id == session_id)):
        flags.dropped_decisions = [
            {**d, "note": ERASED_NOTE if d.get("note") else d.get("note")} for d in flags.dropped_decisions
        ]
    for version in db.scalars(select(ReviewOutcome).where(ReviewOutcome.session_id == session_id)):
        if version.reopen_reason:
            version.reopen_reason = ERASED_NOTE
        if version.platform_result is not None:
            version.platform_result = _without_notes(version.platform_result)
    db.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.session_id == session_id, WebhookDelivery.state == DeliveryState.PENDING.value)
        .values(state=DeliveryState.FAILED.value, last_error="not sent: the session was erased before delivery")
    )
    db.execute(update(WebhookDelivery).where(WebhookDelivery.session_id == session_id).values(body=ERASED_WEBHOOK_BODY))
    erase_session_texts(db, session_id, utcnow())  # what the audit trail kept beside the chain (`core.audit_texts`)


def _without_notes(result: dict[str, Any]) -> dict[str, Any]:
    """A stored review result (`review_ui.results.ReviewResult` as JSON) without its flags' notes and comments."""
    return {**result, "flags": [{**flag, "note": None} for flag in result.get("flags", [])], "comments": []}


@dataclass(frozen=True)
class Expired:
    """A session whose retention period has run out."""

    tenant_id: str
    session_id: str
    since: datetime
    """When its clock started: the review's finalisation, or the session's creation."""


def _final_review() -> ColumnElement[bool]:
    return and_(SessionReview.status == ReviewStatus.FINAL.value, SessionReview.finalised_at.is_not(None))


def _under_appeal() -> ColumnElement[bool]:
    """A review reopened for an appeal: it had a final outcome (a version) and is not final now. Its clock is
    stopped: the recording is the appeal's evidence. It starts again from the next final outcome."""
    return and_(~_final_review(), exists().where(ReviewOutcome.session_id == ExamSession.id))


def expired_sessions(db: Session, days: int, now: datetime) -> list[Expired]:
    """Live sessions whose final review (or, without one, creation) is at least ``days`` old, oldest first;
    never a session under appeal."""
    if days < 1:
        raise ValueError(f"retention days: expected >= 1, found {days}")
    since = case((_final_review(), SessionReview.finalised_at), else_=ExamSession.created_at)
    rows = db.execute(
        select(ExamSession.tenant_id, ExamSession.id, since)
        .outerjoin(SessionReview, SessionReview.session_id == ExamSession.id)
        .where(
            ExamSession.state != SessionState.DELETED.value,
            since <= now - timedelta(days=days),
            ~_under_appeal(),
        )
        .order_by(since, ExamSession.id)
    ).all()
    return [Expired(tenant_id, session_id, started) for tenant_id, session_id, started in rows]


@dataclass(frozen=True)
class ExpiredEnrolment:
    """A candidate's enrolment past the retention period that no live session within the period uses."""

    tenant_id: str
    candidate_id: str
    enrolment_id: str
    session_id: str | None
    """The session that uploaded it (perhaps erased since)."""
    created_at: datetime


@dataclass(frozen=True)
class NotErased:
    """A session or enrolment that retention found expired but could not erase; the next run tries again."""

    kind: str  # "session" or "enrolment"
    id: str
    tenant_id: str
    error: str


@dataclass(frozen=True)
class RetentionRun:
    """What one retention run erased (or, dry, would erase), and what it could not."""

    sessions: list[Expired]
    enrolments: list[ExpiredEnrolment]
    failed: list[NotErased] = field(default_factory=list)


def expired_enrolments(db: Session, days: int, now: datetime) -> list[ExpiredEnrolment]:
    """Enrolments at least ``days`` old that no live session within the period uses, oldest first.

    A session uses the enrolment `core.enrolments.latest_enrolment` gives it: its own, else its candidate's
    newest. So an old enrolment stays while a live session of its candidate whose clock has not run out
    (see `expired_sessions`) uploaded it, or, for the candidate's newest enrolment, while there is any such
    session.
    """
    if days < 1:
        raise ValueError(f"retention days: expected >= 1, found {days}")
    cutoff = now - timedelta(days=days)
    old = db.scalars(
        select(CandidateEnrolment)
        .where(CandidateEnrolment.created_at <= cutoff)
        .order_by(CandidateEnrolment.created_at, CandidateEnrolment.id)
    ).all()
    since = case((_final_review(), SessionReview.finalised_at), else_=ExamSession.created_at)
    expired = []
    for row in old:
        in_period = set(
            db.scalars(
                select(ExamSession.id)
                .outerjoin(SessionReview, SessionReview.session_id == ExamSession.id)
                .where(
                    ExamSession.tenant_id == row.tenant_id,
                    ExamSession.candidate_id == row.candidate_id,
                    ExamSession.state != SessionState.DELETED.value,
                    or_(since > cutoff, _under_appeal()),
                )
            )
        )
        newest = db.scalar(
            select(func.max(CandidateEnrolment.created_at)).where(
                CandidateEnrolment.tenant_id == row.tenant_id, CandidateEnrolment.candidate_id == row.candidate_id
            )
        )
        used = row.session_id in in_period or (bool(in_period) and row.created_at == newest)
        if not used:
            expired.append(ExpiredEnrolment(row.tenant_id, row.candidate_id, row.id, row.session_id, row.created_at))
    return expired


def erase_expired(
    db: Callable[[], AbstractContextManager[Session]],
    store: ObjectStore,
    days: int,
    now: datetime,
    *,
    dry_run: bool = False,
) -> RetentionRun:
    """Erase every expired session, then every expired enrolment (or, with ``dry_run``, only list them)."""
    with db() as session:
        expired = expired_sessions(session, days, now)
    if dry_run:
        with db() as session:
            return RetentionRun(expired, expired_enrolments(session, days, now))
    code = "retention_expired"
    erased: list[Expired] = []
    failed: list[NotErased] = []
    for item in expired:
        try:
            if _erase_expired_session(db, store, item, days, code):
                erased.append(item)
        except Exception as exc:  # one session's failure must not keep every later one past its period
            log.exception("session not erased", extra={"session_id": item.session_id, "code": code})
            failed.append(NotErased("session", item.session_id, item.tenant_id, f"{type(exc).__name__}: {exc}"))
    with db() as session:  # after the sessions: an erased session no longer keeps its candidate's enrolment
        enrolments = expired_enrolments(session, days, now)
    erased_enrolments: list[ExpiredEnrolment] = []
    for enrolment in enrolments:
        try:
            if _erase_expired_enrolment(db, store, enrolment, days, code):
                erased_enrolments.append(enrolment)
        except Exception as exc:
            log.exception("enrolment not erased", extra={"enrolment_id": enrolment.enrolment_id, "code": code})
            failed.append(
                NotErased("enrolment", enrolment.enrolment_id, enrolment.tenant_id, f"{type(exc).__name__}: {exc}")
            )
    log.info(
        "retention run",
        extra={"days": days, "erased": len(erased), "enrolments_erased": len(erased_enrolments), "failed": len(failed)},
    )
    return RetentionRun(erased, erased_enrolments, failed)


def _erase_expired_session(
    db: Callable[[], AbstractContextManager[Session]], store: ObjectStore, item: Expired, days: int, code: str
) -> bool:
    """Erase one expired session in a transaction of its own; False if it was erased meanwhile."""
    with db() as session:
        row = session.get(ExamSession, item.session_id)
        if row is None or row.state == SessionState.DELETED:
            return False  # erased meanwhile, on the platform's request
        removed = erase_session(
            session,
            store,
            row,
            erased_by=ERASED_BY_RETENTION,
            code=code,
            reason=f"recordings erased: the {days}-day retention period ended",
        )
        session.commit()
    log.info("session erased", extra={"session_id": item.session_id, "code": code, "objects_removed": removed})
    return True


def _erase_expired_enrolment(
    db: Callable[[], AbstractContextManager[Session]],
    store: ObjectStore,
    enrolment: ExpiredEnrolment,
    days: int,
    code: str,
) -> bool:
    """Erase one expired enrolment in a transaction of its own; False if it was erased meanwhile."""
    with db() as session:
        found = session.get(CandidateEnrolment, enrolment.enrolment_id)
        if found is None:
            return False  # erased meanwhile, with its candidate
        store.delete(found.object_key)
        session.execute(delete(CandidateEnrolment).where(CandidateEnrolment.id == found.id))
        audit.record(
            session,
            ERASED_BY_RETENTION,
            "erase_enrolment",
            at=utcnow(),
            tenant_id=found.tenant_id,
            session_id=found.session_id,
            code=code,
            reason=f"enrolment erased: the {days}-day retention period ended",
            candidate_id=found.candidate_id,
            kind=found.kind,
            objects_removed=1,
        )
        session.commit()
    log.info("enrolment erased", extra={"enrolment_id": enrolment.enrolment_id, "code": code})
    return True
