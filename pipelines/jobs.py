"""The job queue in the metadata database: claim with a lease, keep it with heartbeats, retry with backoff.

A worker claims one job at a time. On PostgreSQL the candidate row is locked with `FOR UPDATE SKIP LOCKED`,
so concurrent workers never wait on each other; on SQLite (one writer at a time) the claim is a
conditional UPDATE that re-checks the job is still free, and the row count says who won. Either way the
claim is atomic. A worker that stops heartbeating loses its lease, and the next claimer takes the job over;
every later write by the old worker is fenced out by checking `lease_owner`, including the publication of
its results (`JobQueue.complete`, which marks the job done inside `process_session`'s publishing
transaction). A worker that gives a job up for a reason that is not the job's (it is stopping, or its Ray
cluster failed) hands it back with `release`, which spends no attempt.

Claims are fair across tenants: the next job comes from the tenant with the fewest jobs running right now,
and within that tenant it is the oldest runnable one. One platform that queues a thousand recordings then
takes one worker after another only while no other tenant waits; a second tenant's single recording is
claimed as soon as a worker frees up, not after the thousand.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import utcnow
from core.jobs import queue_job
from core.states import SessionState
from core.tables import ExamSession, Job
from core.vocabulary import JobKind, JobState, MediaKind, MediaState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    session_id: str
    kind: str
    attempt: int
    lease_expires_at: datetime
    recording_s: float | None  # the webcam recording's duration, None when it has none (it then fails as such)


@dataclass(frozen=True)
class QueuePolicy:
    lease_s: float = 120.0
    max_attempts: int = 3
    backoff_base_s: float = 30.0
    backoff_max_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.lease_s <= 0 or self.max_attempts < 1 or self.backoff_base_s < 0:
            raise ValueError("lease_s must be > 0, max_attempts >= 1 and backoff_base_s >= 0")

    def backoff(self, attempt: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))


class LeaseLost(RuntimeError):
    """This worker no longer holds the job (its lease expired and another worker took it)."""


class JobQueue:
    def __init__(self, db: sessionmaker[Session], policy: QueuePolicy | None = None) -> None:
        self._db = db
        self.policy = policy or QueuePolicy()

    def enqueue(self, session_id: str, kind: JobKind = JobKind.PROCESS) -> str:
        """Queue a job for a session (re-runs included) and move the session to `queued`."""
        with self._db() as db:
            session = db.get(ExamSession, session_id)
            if session is None:
                raise ValueError(f"no session {session_id!r} to enqueue")
            job = queue_job(db, session, max_attempts=self.policy.max_attempts, kind=kind)
            db.commit()
            return job.id

    def claim(self, worker_id: str, session_id: str | None = None) -> ClaimedJob | None:
        """Take a runnable job (queued, or running under an expired lease), or None: from the tenant with the
        fewest jobs running, the oldest of that tenant's (see the module's docstring).

        `session_id` restricts the claim to that session's jobs (`proctor process`).
        """
        with self._db() as db:
            for _ in range(10):  # lost races on SQLite: try the next candidate
                now = utcnow()
                candidates = _fair_candidates(now).limit(1)
                if session_id is not None:
                    candidates = candidates.where(Job.session_id == session_id)
                if db.bind is not None and db.bind.dialect.name == "postgresql":
                    # Only the job row is locked: the running counts are an aggregate, which cannot be.
                    candidates = candidates.with_for_update(skip_locked=True, of=Job)
                job_id = db.scalar(candidates)
                if job_id is None:
                    db.rollback()
                    return None
                claimed = self._take(db, job_id, worker_id, now)
                if claimed is not None:
                    return claimed
                db.rollback()
        return None

    def _take(self, db: Session, job_id: str, worker_id: str, now: datetime) -> ClaimedJob | None:
        lease_until = now + timedelta(seconds=self.policy.lease_s)
        taken: Any = db.execute(
            update(Job)
            .where(
                Job.id == job_id,
                or_(
                    (Job.state == JobState.QUEUED.value) & (Job.run_after <= now),
                    (Job.state == JobState.RUNNING.value) & (Job.lease_expires_at < now),
                ),
            )
            .values(
                state=JobState.RUNNING.value,
                lease_owner=worker_id,
                lease_expires_at=lease_until,
                attempts=Job.attempts + 1,
                updated_at=now,
            )
        )
        if taken.rowcount != 1:
            return None
        job = db.get(Job, job_id)
        assert job is not None
        db.refresh(job)
        session = db.get(ExamSession, job.session_id)
        if job.attempts > job.max_attempts:
            # Taken over from workers that kept dying: give up rather than loop forever.
            job.state, job.lease_owner = JobState.FAILED.value, None
            job.last_error = f"gave up after {job.max_attempts} attempts; last: {job.last_error or 'worker lost'}"
            if _moves_session(session, job.kind, SessionState.PROCESSING):
                db.add(session.move_to(SessionState.FAILED, code="processing_failed", reason=job.last_error))
            db.commit()
            log.error("job failed for good", extra={"job_id": job_id, "session_id": job.session_id})
            return None
        if _moves_session(session, job.kind, SessionState.QUEUED):
            db.add(session.move_to(SessionState.PROCESSING))
        db.commit()
        log.info(
            "job claimed",
            extra={"job_id": job_id, "session_id": job.session_id, "worker": worker_id, "attempt": job.attempts},
        )
        return ClaimedJob(job.id, job.session_id, job.kind, job.attempts, lease_until, _recording_s(session))

    def heartbeat(self, job: ClaimedJob, worker_id: str) -> datetime:
        """Extend the lease; raises `LeaseLost` if another worker has taken the job."""
        until = utcnow() + timedelta(seconds=self.policy.lease_s)
        with self._db() as db:
            self._owned_update(db, job, worker_id, lease_expires_at=until, updated_at=utcnow())
            db.commit()
        return until

    def keep_alive(self, job: ClaimedJob, worker_id: str, stop: threading.Event) -> None:
        """Heartbeat every third of the lease until `stop` is set or the lease is lost (a worker's thread).

        A failed beat (a locked SQLite file, a dropped connection) is retried at the next one: a heartbeat
        that stopped on a passing error would let a healthy job's lease lapse, and another worker would take
        the job over and count an attempt against it.
        """
        while not stop.wait(self.policy.lease_s / 3):
            try:
                self.heartbeat(job, worker_id)
            except LeaseLost:
                log.warning("lease lost", extra={"job_id": job.id, "session_id": job.session_id})
                return
            except Exception:
                log.exception("heartbeat failed; retrying", extra={"job_id": job.id, "session_id": job.session_id})

    def complete(self, db: Session, job: ClaimedJob, worker_id: str) -> None:
        """Inside the caller's transaction (the one that publishes the results): mark the job done and its
        session processed, or raise `LeaseLost` if this worker no longer holds the job.

        The check is a conditional UPDATE of the job row, so on PostgreSQL the row stays locked until the
        caller commits (a takeover waits for it), and on SQLite the transaction holds the write lock. Once
        committed, the job is no longer `running`, so no later claim can take it over.
        """
        self._owned_update(db, job, worker_id, state=JobState.DONE.value, lease_owner=None, updated_at=utcnow())
        session = db.get(ExamSession, job.session_id)
        if _moves_session(session, job.kind, SessionState.PROCESSING):
            db.add(session.move_to(SessionState.PROCESSED))

    def fail(self, job: ClaimedJob, worker_id: str, reason: str, *, retryable: bool = True) -> bool:
        """Record a failure; returns True if the job will be retried (after a backoff), False if it failed."""
        with self._db() as db:
            row = db.get(Job, job.id)
            assert row is not None
            retry = retryable and job.attempt < row.max_attempts
            values: dict[str, Any] = {"last_error": reason[:4000], "lease_owner": None, "updated_at": utcnow()}
            if retry:
                values |= {"state": JobState.QUEUED.value, "run_after": utcnow() + self.policy.backoff(job.attempt)}
            else:
                values |= {"state": JobState.FAILED.value}
            self._owned_update(db, job, worker_id, **values)
            session = db.get(ExamSession, job.session_id)
            if _moves_session(session, job.kind, SessionState.PROCESSING):
                target = SessionState.QUEUED if retry else SessionState.FAILED
                db.add(session.move_to(target, code=None if retry else "processing_failed", reason=reason[:4000]))
            db.commit()
        log.warning(
            "job failed",
            extra={
                "job_id": job.id,
                "session_id": job.session_id,
                "attempt": job.attempt,
                "retry": retry,
                "reason": reason[:500],
            },
        )
        return retry

    def release(self, job: ClaimedJob, worker_id: str, *, after: timedelta = timedelta(0), reason: str = "") -> None:
        """Hand the job back, not counting this attempt: claimable again `after` from now (by any worker).

        Raises `LeaseLost` if this worker no longer holds it (it finished meanwhile, or was taken over)."""
        with self._db() as db:
            values: dict[str, Any] = {
                "state": JobState.QUEUED.value,
                "lease_owner": None,
                "attempts": Job.attempts - 1,
                "run_after": utcnow() + after,
                "updated_at": utcnow(),
            }
            if reason:
                values["last_error"] = reason[:4000]
            self._owned_update(db, job, worker_id, **values)
            session = db.get(ExamSession, job.session_id)
            if _moves_session(session, job.kind, SessionState.PROCESSING):
                db.add(session.move_to(SessionState.QUEUED))
            db.commit()
        log.info(
            "job handed back",
            extra={"job_id": job.id, "session_id": job.session_id, "after_s": after.total_seconds(), "reason": reason},
        )

    def _owned_update(self, db: Session, job: ClaimedJob, worker_id: str, **values: Any) -> None:
        result: Any = db.execute(
            update(Job)
            .where(Job.id == job.id, Job.lease_owner == worker_id, Job.state == JobState.RUNNING.value)
            .values(**values)
        )
        if result.rowcount != 1:
            db.rollback()
            raise LeaseLost(f"worker {worker_id} no longer holds job {job.id}: its lease expired and it was taken over")


def _moves_session(session: ExamSession | None, kind: str, state: SessionState) -> TypeGuard[ExamSession]:
    """Whether a job of `kind` moves `session`, now in `state`, through processing: only processing jobs do. A
    re-scoring job leaves the state alone, even one claimed while the session waits to be processed again."""
    return kind == JobKind.PROCESS and session is not None and session.state == state


def _fair_candidates(now: datetime) -> Select[str]:
    """Runnable jobs' ids, fairest first: by their tenant's count of jobs running under a live lease, then
    oldest first (`run_after`, then `created_at`)."""
    running = (
        select(ExamSession.tenant_id.label("tenant_id"), func.count().label("jobs"))
        .join(Job, Job.session_id == ExamSession.id)
        .where(Job.state == JobState.RUNNING.value, Job.lease_expires_at >= now)
        .group_by(ExamSession.tenant_id)
        .subquery("running")
    )
    return (
        select(Job.id)
        .join(ExamSession, ExamSession.id == Job.session_id)
        .outerjoin(running, running.c.tenant_id == ExamSession.tenant_id)
        .where(
            or_(
                (Job.state == JobState.QUEUED.value) & (Job.run_after <= now),
                (Job.state == JobState.RUNNING.value) & (Job.lease_expires_at < now),
            )
        )
        .order_by(func.coalesce(running.c.jobs, 0), Job.run_after, Job.created_at)
    )


def _recording_s(session: ExamSession | None) -> float | None:
    """The duration of the session's complete webcam recording, if it has one (a job's deadline follows it)."""
    media = [] if session is None else session.media
    webcam = next((m for m in media if m.kind == MediaKind.WEBCAM and m.state == MediaState.COMPLETE), None)
    probe = None if webcam is None else webcam.video_probe
    return None if probe is None else probe.duration_s
