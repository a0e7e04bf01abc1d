"""Fair claiming across tenants: a tenant with a long queue does not hold up another's single job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker, migrate
from core.states import SessionState
from core.tables import Exam, ExamSession, Job, Tenant
from pipelines.jobs import JobQueue
from tests.pipelines.test_jobs import claimed_by_racing_workers


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


def queue_for_new_tenant(db: sessionmaker[Session], queue: JobQueue, jobs: int) -> set[str]:
    """A new tenant with `jobs` validated sessions, each queued in turn; returns their session ids."""
    with db() as s:
        tenant = Tenant(slug=f"t-{uuid.uuid4().hex[:8]}", name="t")
        s.add(tenant)
        s.flush()
        exam = Exam(tenant_id=tenant.id, external_id="e")
        s.add(exam)
        s.flush()
        sessions = [
            ExamSession(
                tenant_id=tenant.id,
                exam_id=exam.id,
                candidate_id=f"c{n}",
                attempt_id=uuid.uuid4().hex,
                started_at=datetime.now(UTC),
                state=SessionState.VALIDATED.value,
            )
            for n in range(jobs)
        ]
        s.add_all(sessions)
        s.commit()
        ids = [session.id for session in sessions]
    for sid in ids:
        queue.enqueue(sid)
    return set(ids)


def test_a_single_job_is_claimed_within_two_claims_behind_another_tenants_fifty(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db)
    busy = queue_for_new_tenant(db, queue, 50)
    quiet = queue_for_new_tenant(db, queue, 1)
    claimed = [queue.claim(f"w{n}") for n in range(2)]
    assert all(claimed)
    sessions = [job.session_id for job in claimed if job is not None]
    assert sessions[0] in busy, "both tenants run nothing: the oldest job goes first"
    assert sessions[1] in quiet, "tenant B's only job comes before tenant A's second"


def test_claims_alternate_between_tenants_and_keep_each_tenants_order(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db)
    first = queue_for_new_tenant(db, queue, 4)
    second = queue_for_new_tenant(db, queue, 4)
    with db() as s:
        order = {sid: n for n, sid in enumerate(s.scalars(select(Job.session_id).order_by(Job.created_at)))}
    claimed = [queue.claim(f"w{n}") for n in range(8)]
    owners = ["A" if job is not None and job.session_id in first else "B" for job in claimed]
    assert owners == ["A", "B"] * 4
    for tenant in (first, second):
        mine = [order[job.session_id] for job in claimed if job is not None and job.session_id in tenant]
        assert mine == sorted(mine), "within a tenant, the oldest job goes first"
    assert queue.claim("w9") is None


def test_a_finished_job_frees_its_tenants_turn(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db)
    busy = queue_for_new_tenant(db, queue, 3)
    quiet = queue_for_new_tenant(db, queue, 2)
    a1, b1 = queue.claim("w1"), queue.claim("w2")
    assert a1 is not None and a1.session_id in busy and b1 is not None and b1.session_id in quiet
    with db() as s:  # tenant A's job finishes: A now runs none, B runs one
        queue.complete(s, a1, "w1")
        s.commit()
    nxt = queue.claim("w1")
    assert nxt is not None and nxt.session_id in busy


def test_concurrent_workers_claim_every_job_of_every_tenant_once(db: sessionmaker[Session]) -> None:
    queue = JobQueue(db)
    for _ in range(3):
        queue_for_new_tenant(db, queue, 4)
    claimed = claimed_by_racing_workers(queue, 4)
    assert len(claimed) == 12 and len(set(claimed)) == 12
