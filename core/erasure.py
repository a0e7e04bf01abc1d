"""Erasure and retention: recordings are biometric data, erased on request or when the retention period ends.

Erasing a session removes every object under its prefix (recordings, event log, signals, evidence frames)
and any unfinished upload; the row stays, marked deleted with the reason, so reports and the audit trail
keep the decision without the biometric data. The session's open jobs are failed first, in the same
transaction, so a worker publishing meanwhile is fenced out and removes what it wrote.

Retention: a session's clock starts when its review became final (the platform has its outcome, and appeals
work from the decision and the audit trail), or, for a session never finally reviewed (rejected, failed,
abandoned, still waiting), when it was created: the period is a maximum, not a minimum.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, select
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.jobs import fail_open_jobs
from core.states import SessionState
from core.tables import ExamSession, SessionReview
from core.vocabulary import ReviewStatus
from storage.keys import SessionPrefix
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)

ERASED_BY_RETENTION = "system:retention"


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


@dataclass(frozen=True)
class Expired:
    """A session whose retention period has run out."""

    tenant_id: str
    session_id: str
    since: datetime
    """When its clock started: the review's finalisation, or the session's creation."""


def expired_sessions(db: Session, days: int, now: datetime) -> list[Expired]:
    """Live sessions whose final review (or, without one, creation) is at least ``days`` old, oldest first."""
    if days < 1:
        raise ValueError(f"retention days: expected >= 1, found {days}")
    final = and_(SessionReview.status == ReviewStatus.FINAL.value, SessionReview.finalised_at.is_not(None))
    since = case((final, SessionReview.finalised_at), else_=ExamSession.created_at)
    rows = db.execute(
        select(ExamSession.tenant_id, ExamSession.id, since)
        .outerjoin(SessionReview, SessionReview.session_id == ExamSession.id)
        .where(ExamSession.state != SessionState.DELETED.value, since <= now - timedelta(days=days))
        .order_by(since, ExamSession.id)
    ).all()
    return [Expired(tenant_id, session_id, started) for tenant_id, session_id, started in rows]


def erase_expired(
    db: Callable[[], AbstractContextManager[Session]],
    store: ObjectStore,
    days: int,
    now: datetime,
    *,
    dry_run: bool = False,
) -> list[Expired]:
    """Erase every expired session (or, with ``dry_run``, only list them); returns the sessions concerned."""
    with db() as session:
        expired = expired_sessions(session, days, now)
    if dry_run:
        return expired
    for item in expired:
        with db() as session:
            row = session.get(ExamSession, item.session_id)
            if row is None or row.state == SessionState.DELETED:
                continue  # erased meanwhile, on the platform's request
            code = "retention_expired"
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
    log.info("retention run", extra={"days": days, "erased": len(expired)})
    return expired
