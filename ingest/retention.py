"""Retention: recordings are biometric data, erased once the retention period has run out.

A session's clock starts when its review became final (the platform has its outcome, and appeals work
from the decision and the audit trail), or, for a session never finally reviewed (rejected, failed,
abandoned, still waiting), when it was created: the period is a maximum, not a minimum. Erasure is the
same as on the platform's request (``Uploads.delete``): every object under the session's prefix goes
(recordings, event log, signals, evidence frames); the row stays, marked deleted with the reason, so
reports and the audit trail keep the decision without the biometric data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, select
from sqlalchemy.orm import Session

from ingest.db import ExamSession, SessionReview
from ingest.states import SessionState
from ingest.uploads import Uploads

log = logging.getLogger(__name__)

ERASED_BY = "system:retention"


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
    final = and_(SessionReview.status == "final", SessionReview.finalised_at.is_not(None))
    since = case((final, SessionReview.finalised_at), else_=ExamSession.created_at)
    rows = db.execute(
        select(ExamSession.tenant_id, ExamSession.id, since)
        .outerjoin(SessionReview, SessionReview.session_id == ExamSession.id)
        .where(ExamSession.state != SessionState.DELETED.value, since <= now - timedelta(days=days))
        .order_by(since, ExamSession.id)
    ).all()
    return [Expired(tenant_id, session_id, started) for tenant_id, session_id, started in rows]


def erase_expired(
    uploads: Uploads,
    db: Callable[[], AbstractContextManager[Session]],
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
        uploads.delete(
            item.tenant_id,
            item.session_id,
            erased_by=ERASED_BY,
            code="retention_expired",
            reason=f"recordings erased: the {days}-day retention period ended",
        )
    log.info("retention run", extra={"days": days, "erased": len(expired)})
    return expired
