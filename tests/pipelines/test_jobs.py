"""The job queue on SQLite and PostgreSQL: exclusive claims, leases, fencing, retries."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker, migrate
from core.rescoring import queue_rescores
from core.states import SessionState
from core.tables import Exam, ExamSession, Job, Tenant
from core.vocabulary import JobKind
from pipelines.jobs import ClaimedJob, JobQueue, LeaseLost, QueuePolicy


@pytest.fixture
def db(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate(database_url)
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    with factory() as s:  # the PostgreSQL database is shared by the run: start from an empty queue
        s.execute(delete(Job))
        s.commit()
    yield factory
    engine.dispose()


def validated_session(db: sessionmaker[Session]) -> str:
    with db() as s:
        tenant = Tenant(slug=f"t-{uuid.uuid4().hex[:8]}", name="t")
        s.add(tenant)
        s.flush()
        exam = Exam(tenant_id=tenant.id, external_id="e")
        s.add(exam)
        s.flush()
        session = ExamSession(
            tenant_id=tenant.id,
            exam_id=exam.id,
            candidate_id="c",
            attempt_id=uuid.uuid4().hex,
            started_at=datetime.now(UTC),
            state=SessionState.VALIDATED.value,
        )
        s.add(session)
        s.commit()
        return session.id


def state_of(db: sessionmaker[Session], session_id: str) -> str:
    with db() as s:
        row = s.get(ExamSession, session_id)
        assert row is not None
        return row.state


def succeed(db: sessionmaker[Session], queue: JobQueue, job: ClaimedJob, worker_id: str) -> None:
    """What a worker's publishing transaction does for the queue, alone."""
    with db() as s:
        queue.complete(s, job, worker_id)
        s.commit()


def expire_leases(db: sessionmaker[Session]) -> None:
    with db() as s:
        s.execute(update(Job).values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()


def claimed_by_racing_workers(queue: JobQueue, workers: int) -> list[str]:
    """The job ids that `workers` threads, released at once, claim until the queue is empty."""
    claimed: list[str] = []
    barrier = threading.Barrier(workers)

    def work(worker: str) -> None:
        barrier.wait()
        while (job := queue.claim(worker)) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return claimed


def test_claim_runs_and_completes_a_job(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db)
    sid = validated_session(db)
    queue.enqueue(sid)
    assert state_of(db, sid) == "queued"
    job = queue.claim("w1")
    assert job is not None and job.session_id == sid and job.attempt == 1
    assert state_of(db, sid) == "processing"
    assert queue.claim("w2") is None, "a held job is not handed out twice"
    queue.heartbeat(job, "w1")
    succeed(db, queue, job, "w1")
    assert state_of(db, sid) == "processed"
    assert queue.claim("w2") is None


def test_concurrent_workers_never_claim_the_same_job(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db)
    sessions = [validated_session(db) for _ in range(6)]
    for sid in sessions:
        queue.enqueue(sid)
    claimed = claimed_by_racing_workers(queue, 4)
    assert len(claimed) == 6 and len(set(claimed)) == 6


def test_a_dead_workers_job_is_taken_over_and_the_old_worker_is_fenced_out(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db)
    sid = validated_session(db)
    queue.enqueue(sid)
    first = queue.claim("dies")
    assert first is not None
    expire_leases(db)  # the worker stopped heartbeating
    second = queue.claim("survivor")
    assert second is not None and second.id == first.id and second.attempt == 2
    with pytest.raises(LeaseLost, match="taken over"):
        queue.heartbeat(first, "dies")
    with pytest.raises(LeaseLost):
        succeed(db, queue, first, "dies")
    succeed(db, queue, second, "survivor")
    assert state_of(db, sid) == "processed"


class FlakyQueue(JobQueue):
    """A queue whose first heartbeat fails as a locked database or a dropped connection would."""

    beats = 0

    def heartbeat(self, job: ClaimedJob, worker_id: str) -> datetime:
        self.beats += 1
        if self.beats == 1:
            raise OperationalError("UPDATE jobs ...", {}, Exception("database is locked"))
        return super().heartbeat(job, worker_id)


def test_a_failed_heartbeat_does_not_stop_the_next(db: sessionmaker[Session]) -> None:
    queue = FlakyQueue(db, QueuePolicy(lease_s=0.3))
    queue.enqueue(validated_session(db))
    job = queue.claim("w")
    assert job is not None
    stop = threading.Event()
    beating = threading.Thread(target=queue.keep_alive, args=(job, "w", stop))
    beating.start()
    time.sleep(1.0)  # the lease is 0.3 s: without the beats after the failed one it would have lapsed
    assert queue.claim("other") is None, "the job is still held"
    stop.set()
    beating.join()
    assert queue.beats >= 3


def test_failures_retry_with_backoff_then_fail_with_the_reason(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db, QueuePolicy(max_attempts=2, backoff_base_s=0.0))
    sid = validated_session(db)
    queue.enqueue(sid)
    job = queue.claim("w")
    assert job is not None
    assert queue.fail(job, "w", "decoder crashed") is True
    assert state_of(db, sid) == "queued"
    job = queue.claim("w")
    assert job is not None and job.attempt == 2
    assert queue.fail(job, "w", "decoder crashed again") is False
    with db() as s:
        row = s.get(ExamSession, sid)
        assert row is not None and row.state == "failed" and row.reason == "decoder crashed again"
    assert queue.claim("w") is None


def test_backoff_delays_the_retry(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db, QueuePolicy(backoff_base_s=60))
    queue.enqueue(validated_session(db))
    job = queue.claim("w")
    assert job is not None
    queue.fail(job, "w", "transient")
    assert queue.claim("w") is None, "not before the backoff has passed"
    assert QueuePolicy(backoff_base_s=30).backoff(3) == timedelta(seconds=120)


def test_non_retryable_failure_fails_at_once(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db)
    sid = validated_session(db)
    queue.enqueue(sid)
    job = queue.claim("w")
    assert job is not None
    assert queue.fail(job, "w", "corrupt bytes at 31.0 s", retryable=False) is False
    assert state_of(db, sid) == "failed"


def test_workers_that_keep_dying_end_in_failure(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db, QueuePolicy(max_attempts=2))
    sid = validated_session(db)
    queue.enqueue(sid)
    for _ in range(2):
        assert queue.claim("w") is not None
        expire_leases(db)
    assert queue.claim("w") is None
    with db() as s:
        row = s.get(ExamSession, sid)
        assert row is not None and row.state == "failed" and "gave up after 2 attempts" in (row.reason or "")


def test_a_rescore_job_never_moves_the_session_through_processing(db: sessionmaker[Session]) -> None:
    """A session queued to be processed again while a re-scoring of its old run waits: the re-scoring job, claimed
    first (it is older), leaves the session `queued` for its processing job, whatever becomes of it."""
    queue = JobQueue(db)
    sid = validated_session(db)
    queue.enqueue(sid)
    first = queue.claim("w1")
    assert first is not None
    succeed(db, queue, first, "w1")
    with db() as s:
        assert queue_rescores(s, [sid]) == 1
        s.commit()
    queue.enqueue(sid)  # processed again, say with a newer model
    assert state_of(db, sid) == "queued"

    rescore = queue.claim("w1")
    assert rescore is not None and rescore.kind == JobKind.RESCORE
    assert state_of(db, sid) == "queued"
    assert queue.fail(rescore, "w1", "a passing error") is True
    assert state_of(db, sid) == "queued"

    process = queue.claim("w2")
    assert process is not None and process.kind == JobKind.PROCESS
    assert state_of(db, sid) == "processing"
    succeed(db, queue, process, "w2")
    assert state_of(db, sid) == "processed"
