"""Putting work on the job queue (the one way a job row is created), and failing a session's open jobs when
it is erased.

The queue itself (claims, leases, heartbeats, retries) is `pipelines.jobs.JobQueue`; it and the upload
protocol both queue through `queue_job`, inside the caller's transaction, so a session is `queued` exactly
when it has an open job.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.states import SessionState
from core.tables import ExamSession, Job
from core.vocabulary import OPEN_JOB_STATES, JobKind, JobState


def queue_job(db: Session, session: ExamSession, *, max_attempts: int, kind: JobKind = JobKind.PROCESS) -> Job:
    """Move `session` to `queued` (raises `IllegalTransition` from a state that cannot be) and add its job."""
    db.add(session.move_to(SessionState.QUEUED))
    job = Job(session_id=session.id, kind=kind.value, max_attempts=max_attempts)
    db.add(job)
    db.flush()
    return job


def fail_open_jobs(db: Session, session_id: str, reason: str) -> None:
    """Fail every queued or running job of a session (no retry); a worker holding one is fenced out."""
    db.execute(
        update(Job)
        .where(Job.session_id == session_id, Job.state.in_(OPEN_JOB_STATES))
        .values(state=JobState.FAILED.value, last_error=reason, updated_at=utcnow())
    )
