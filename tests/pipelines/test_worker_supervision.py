"""A worker gives a job up for good reasons only, and says why: its deadline passed (an attempt spent), it was
asked to stop or its Ray cluster failed (handed back, no attempt spent); a job nearly done when the stop
comes is finished.

The jobs are real (an uploaded recording, the real queue); the fan-outs are stand-ins that hang, fail as the
cluster would, or run the real `LocalFanout`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from core.db import utcnow
from core.tables import ExamSession, Job
from detectors import Signals
from ingest.client import upload_session
from pipelines.analysis import AnalysisConfig
from pipelines.decode import Chunk
from pipelines.fanout import AnalysisCancelled, FanoutUnavailable, LocalFanout, Progress
from pipelines.jobs import JobQueue, QueuePolicy
from pipelines.worker import JobWatch, Verdict, Worker, WorkerConfig, job_deadline_s, verdict
from proctor.samples import SampleSession, build_sample_session
from tests.support.platform import Api

CHUNK_MS = 4000


@pytest.mark.parametrize(
    ("recording_s", "floor_s", "factor", "deadline_s"),
    [
        (60.0, 600.0, 1.0, 600.0),  # a short recording gets the floor
        (3600.0, 600.0, 1.0, 3600.0),
        (3600.0, 600.0, 0.5, 1800.0),
        (None, 600.0, 2.0, 600.0),  # no recording: the floor (the job then fails as not processable)
    ],
)
def test_the_deadline_grows_with_the_recording(
    recording_s: float | None, floor_s: float, factor: float, deadline_s: float
) -> None:
    config = WorkerConfig(deadline_floor_s=floor_s, deadline_factor=factor)
    assert job_deadline_s(recording_s, config) == deadline_s


@pytest.mark.parametrize(
    ("watch", "expected"),
    [
        (JobWatch(10, 600, 1, 10, None), Verdict.CARRY_ON),
        (JobWatch(600, 600, 9, 10, None), Verdict.TIME_OUT),
        (JobWatch(700, 600, 9, 10, 1.0), Verdict.TIME_OUT),  # past the deadline, stopping or not
        (JobWatch(10, 600, 0, 0, 0.0), Verdict.HAND_BACK),  # no chunk analysed: no pace to judge by
        (JobWatch(10, 600, 1, 10, 0.0), Verdict.HAND_BACK),  # 90 s to go at its pace, 8 s of grace
        (JobWatch(30, 600, 9, 10, 0.0), Verdict.CARRY_ON),  # 3.3 s to go
        (JobWatch(30, 600, 9, 10, 6.0), Verdict.HAND_BACK),  # ... but only 2 s of the grace left
        (JobWatch(30, 600, 10, 10, 7.9), Verdict.CARRY_ON),  # analysed, publishing
        (JobWatch(30, 600, 10, 10, 8.1), Verdict.HAND_BACK),  # the grace is over
    ],
)
def test_a_stop_finishes_only_a_job_that_ends_within_the_grace(watch: JobWatch, expected: Verdict) -> None:
    assert verdict(watch, grace_s=8.0) is expected


class Hanging:
    """A fan-out whose analysis hangs (a stuck decoder) until it is cancelled."""

    def __init__(self) -> None:
        self.analysing = threading.Event()
        self.cancelled = threading.Event()

    def versions(self) -> dict[str, str]:
        return {}

    def analyze(
        self,
        key: str,
        chunks: Sequence[Chunk],
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Signals]:
        assert cancel is not None
        self.analysing.set()
        if not cancel.wait(60):
            raise AssertionError("the analysis was never cancelled")
        self.cancelled.set()
        raise AnalysisCancelled("cancelled")


class ClusterDown:
    """A fan-out whose Ray cluster fails under every analysis."""

    def versions(self) -> dict[str, str]:
        return {}

    def analyze(
        self,
        key: str,
        chunks: Sequence[Chunk],
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Signals]:
        raise FanoutUnavailable("the Ray cluster failed during the analysis: RaySystemError: the head is gone")


class Watched:
    """The real `LocalFanout`, calling `after_chunk(done, total)` once each chunk is analysed."""

    def __init__(self, fanout: LocalFanout, after_chunk: Callable[[int, int], None]) -> None:
        self.fanout, self.after_chunk = fanout, after_chunk

    def versions(self) -> dict[str, str]:
        return self.fanout.versions()

    def analyze(
        self,
        key: str,
        chunks: Sequence[Chunk],
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Signals]:
        def progress(done: int, total: int) -> None:
            if on_progress is not None:
                on_progress(done, total)
            self.after_chunk(done, total)

        return self.fanout.analyze(key, chunks, progress, cancel)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("supervision"), duration_s=12, seed=5)


@pytest.fixture
def sid(api: Api, sample: SampleSession) -> Iterator[str]:
    """An uploaded session, its job queued; the job is removed afterwards (PostgreSQL's queue is shared by the
    run, and other tests' workers claim whatever job is queued)."""
    _, key = api.tenant()
    with api.client(key) as client:
        session_id: str = upload_session(client, webcam=sample.video_path, exam_id="exam-sup", candidate_id="c")["id"]
    yield session_id
    with api.context.db() as db:
        db.execute(delete(Job).where(Job.session_id == session_id))
        db.commit()


def job_of(api: Api, session_id: str) -> Job:
    with api.context.db() as db:
        row = db.scalars(select(Job).where(Job.session_id == session_id)).one()
        db.expunge(row)
        return row


def set_job(api: Api, session_id: str, **values: object) -> None:
    with api.context.db() as db:
        row = db.scalars(select(Job).where(Job.session_id == session_id)).one()
        for name, value in values.items():
            setattr(row, name, value)
        db.commit()


def session_state(api: Api, session_id: str) -> str:
    with api.context.db() as db:
        row = db.get(ExamSession, session_id)
        assert row is not None
        return row.state


def worker(api: Api, fanout: object, queue: JobQueue | None = None, **config: float) -> Worker:
    return Worker(
        api.context.db,
        api.context.store,
        fanout,  # type: ignore[arg-type]
        queue or JobQueue(api.context.db),
        WorkerConfig(chunk_target_ms=CHUNK_MS, poll_s=0.1, **config),  # type: ignore[arg-type]
        worker_id="w-1",
    )


@pytest.mark.timeout(120)
def test_a_stopping_worker_hands_its_job_back_without_spending_an_attempt(api: Api, sid: str) -> None:
    fanout, stop = Hanging(), threading.Event()
    ran: list[bool] = []
    running = threading.Thread(target=lambda: ran.append(worker(api, fanout).run_one(sid, stop=stop)))
    running.start()
    assert fanout.analysing.wait(60)
    assert (job_of(api, sid).state, job_of(api, sid).attempts) == ("running", 1)
    stopped_at = time.monotonic()
    stop.set()
    running.join(30)
    assert ran == [True] and time.monotonic() - stopped_at < 5, "handed back at once: nothing was analysed yet"
    assert fanout.cancelled.is_set(), "its analysis was cancelled"
    handed_back = job_of(api, sid)
    assert (handed_back.state, handed_back.lease_owner, handed_back.attempts) == ("queued", None, 0)
    assert handed_back.run_after <= utcnow() and handed_back.last_error is None
    assert session_state(api, sid) == "queued"

    survivor = worker(api, LocalFanout(AnalysisConfig(), api.context.location))
    assert survivor.run_one(sid)
    assert (job_of(api, sid).state, job_of(api, sid).attempts) == ("done", 1)
    assert session_state(api, sid) == "processed"


@pytest.mark.timeout(120)
def test_a_job_that_ends_within_the_grace_is_finished(api: Api, sid: str) -> None:
    stop = threading.Event()

    def stop_at_the_last_chunk(done: int, total: int) -> None:
        if done == total:
            stop.set()

    fanout = Watched(LocalFanout(AnalysisConfig(), api.context.location), stop_at_the_last_chunk)
    assert worker(api, fanout, stop_grace_s=60.0).run_one(sid, stop=stop)
    assert stop.is_set()
    assert (job_of(api, sid).state, job_of(api, sid).attempts) == ("done", 1)
    assert session_state(api, sid) == "processed"


@pytest.mark.timeout(120)
def test_a_stop_after_the_grace_hands_back_a_job_with_chunks_to_go(api: Api, sid: str) -> None:
    stop = threading.Event()

    def stop_after_the_first_chunk(done: int, total: int) -> None:
        assert total >= 3
        if done == 1:
            stop.set()
            time.sleep(1)  # the supervisor looks, and gives the job up before the next chunk

    fanout = Watched(LocalFanout(AnalysisConfig(), api.context.location), stop_after_the_first_chunk)
    assert worker(api, fanout, stop_grace_s=0.0).run_one(sid, stop=stop)
    job = job_of(api, sid)
    assert (job.state, job.lease_owner, job.attempts) == ("queued", None, 0)
    assert session_state(api, sid) == "queued"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("max_attempts", "state"), [(2, "queued"), (1, "failed")])
def test_a_hung_job_times_out_although_heartbeats_keep_its_lease(
    api: Api, sid: str, max_attempts: int, state: str
) -> None:
    set_job(api, sid, max_attempts=max_attempts)
    queue = JobQueue(api.context.db, QueuePolicy(lease_s=1.0, backoff_base_s=60))
    fanout = Hanging()
    started = time.monotonic()
    assert worker(api, fanout, queue, deadline_floor_s=4.0, deadline_factor=0.01).run_one(sid)
    took = time.monotonic() - started
    assert 4.0 <= took < 10, f"given up at its deadline (4 s, the floor: 12 s x 0.01 is less), after {took:.1f} s"
    assert fanout.cancelled.is_set()
    job = job_of(api, sid)
    assert (job.state, job.lease_owner, job.attempts) == (state, None, 1), "the attempt counts"
    assert job.last_error is not None and job.last_error.startswith("timed out: not done 4 s after it was claimed")
    assert "a 12 s recording" in job.last_error and "PROCTOR_JOB_DEADLINE_FACTOR" in job.last_error
    assert session_state(api, sid) == state
    if state == "queued":
        assert job.run_after > utcnow() + timedelta(seconds=50), "retried after the backoff"


@pytest.mark.timeout(120)
def test_a_failed_cluster_hands_the_job_back_after_a_backoff(api: Api, sid: str) -> None:
    set_job(api, sid, max_attempts=1)
    queue = JobQueue(api.context.db, QueuePolicy(backoff_base_s=30))
    for _ in range(3):  # never spends the job's only attempt
        set_job(api, sid, run_after=utcnow())  # the backoff has passed
        assert worker(api, ClusterDown(), queue).run_one(sid)
        job = job_of(api, sid)
        assert (job.state, job.lease_owner, job.attempts) == ("queued", None, 0)
        assert job.last_error is not None and "RaySystemError: the head is gone" in job.last_error
        assert job.run_after > utcnow() + timedelta(seconds=25)
    assert session_state(api, sid) == "queued"
