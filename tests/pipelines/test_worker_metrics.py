"""The job worker's liveness, readiness and metrics, served over HTTP as `proctor worker` serves them: the
values move when real jobs end (a processed recording, a cluster failure), the loop's ticks keep it live, and
it is ready only once its fan-out is up and the database answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, update

from core.db import ping_database, utcnow
from core.health import Dependency, DependencyChecks
from core.tables import Job
from ingest.client import upload_session
from pipelines.analysis import AnalysisConfig
from pipelines.decode import Chunk, DecodeError
from pipelines.fanout import ChunkFailed, FanoutUnavailable, LocalFanout
from pipelines.jobs import ClaimedJob, JobQueue
from pipelines.metrics import LIVE_POLLS, WorkerMonitor, failure_reason, realtime_factor, stalled
from pipelines.ops_server import OpsServer
from pipelines.process import NotProcessable
from pipelines.worker import JobEnded, JobOutcome, Verdict, Worker, WorkerConfig
from proctor.samples import SampleSession, build_sample_session
from tests.pipelines.test_worker_supervision import ClusterDown
from tests.support.platform import Api

CHUNK_MS = 4000
JOB = ClaimedJob("j", "s", "process", 1, datetime(2026, 1, 1, tzinfo=UTC), 120.0)


def ended(outcome: JobOutcome, error: BaseException | None = None, verdict: Verdict = Verdict.CARRY_ON) -> JobEnded:
    return JobEnded(JOB, outcome, verdict, error, 60.0)


CHUNK = Chunk(0, 0, 4000)


@pytest.mark.parametrize(
    ("job", "reason"),
    [
        (ended(JobOutcome.DONE), None),
        (ended(JobOutcome.LEASE_LOST), None),
        (ended(JobOutcome.HANDED_BACK, verdict=Verdict.HAND_BACK), None),  # stopping: not a failure
        (ended(JobOutcome.RETRY, verdict=Verdict.TIME_OUT), "timed_out"),
        (ended(JobOutcome.FAILED, ChunkFailed(CHUNK, "no frames")), "chunk_failed"),
        (ended(JobOutcome.FAILED, DecodeError("bad")), "undecodable"),
        (ended(JobOutcome.FAILED, NotProcessable("none")), "not_processable"),
        (ended(JobOutcome.HANDED_BACK, FanoutUnavailable("head gone")), "cluster_unavailable"),
        (ended(JobOutcome.RETRY, OSError("disk full")), "error"),
    ],
)
def test_failure_reasons_come_from_a_closed_list(job: JobEnded, reason: str | None) -> None:
    assert failure_reason(job) == reason


@pytest.mark.parametrize(
    ("recording_s", "elapsed_s", "factor"),
    [(120.0, 60.0, 2.0), (30.0, 60.0, 0.5), (None, 60.0, None), (120.0, 0.0, None), (0.0, 10.0, None)],
)
def test_the_realtime_factor_is_recording_seconds_per_wall_second(
    recording_s: float | None, elapsed_s: float, factor: float | None
) -> None:
    assert realtime_factor(recording_s, elapsed_s) == factor


@pytest.mark.parametrize(
    ("last_tick_s", "now_s", "live"),
    [(None, 1000.0, True), (100.0, 100.0 + LIVE_POLLS * 2.0, True), (100.0, 100.1 + LIVE_POLLS * 2.0, False)],
)
def test_live_while_starting_or_while_the_loop_goes_round(last_tick_s: float | None, now_s: float, live: bool) -> None:
    assert (stalled(last_tick_s, now_s, poll_s=2.0) is None) is live


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("worker-metrics"), duration_s=10, seed=7)


@pytest.fixture
def sid(api: Api, sample: SampleSession) -> Iterator[str]:
    """An uploaded session with its job queued; the job is removed afterwards (PostgreSQL's queue is shared)."""
    _, key = api.tenant()
    with api.client(key) as client:
        session_id: str = upload_session(client, webcam=sample.video_path, exam_id="exam-m", candidate_id="c")["id"]
    yield session_id
    with api.context.db() as db:
        db.execute(delete(Job).where(Job.session_id == session_id))
        db.commit()


def monitor_of(api: Api, clock: Clock | None = None) -> WorkerMonitor:
    readiness = DependencyChecks([Dependency("database", partial(ping_database, api.context.db))], 2.0)
    return WorkerMonitor(api.context.db, readiness, poll_s=0.5, clock=clock or Clock())


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def worker_of(api: Api, fanout: object, monitor: WorkerMonitor) -> Worker:
    config = WorkerConfig(chunk_target_ms=CHUNK_MS, poll_s=0.1)
    return Worker(api.context.db, api.context.store, fanout, JobQueue(api.context.db), config, hooks=monitor)  # type: ignore[arg-type]


@pytest.mark.timeout(300)
def test_metrics_move_when_a_job_is_processed_and_when_the_cluster_fails(api: Api, sid: str) -> None:
    monitor = monitor_of(api)
    with OpsServer("127.0.0.1", 0, monitor) as ops:
        url = f"http://127.0.0.1:{ops.port}"
        before = scrape(url)
        done = ("proctor_worker_jobs_total", (("outcome", "done"),))
        handed_back = ("proctor_worker_jobs_total", (("outcome", "handed_back"),))
        assert done not in before  # no job yet: a labelled counter has no sample until it counts
        queued_before = before[("proctor_queue_jobs", (("state", "queued"),))]
        assert queued_before >= 1
        assert before[("proctor_queue_oldest_due_seconds", ())] > 0, "this session's job waits for a worker"

        assert worker_of(api, ClusterDown(), monitor).run_one(sid)
        after_failure = scrape(url)
        assert after_failure[handed_back] == 1
        assert after_failure[("proctor_worker_job_failures_total", (("reason", "cluster_unavailable"),))] == 1
        assert after_failure[("proctor_queue_jobs", (("state", "queued"),))] == queued_before  # handed back
        with api.context.db() as db:  # claimable again now rather than after the backoff
            db.execute(update(Job).where(Job.session_id == sid).values(run_after=utcnow()))
            db.commit()

        assert worker_of(api, LocalFanout(AnalysisConfig(), api.context.location), monitor).run_one(sid)
        after = scrape(url)
    assert after[done] == 1
    assert after[("proctor_worker_job_seconds_count", ())] == 1
    assert 0 < after[("proctor_worker_job_seconds_sum", ())] < 300
    assert after[("proctor_worker_realtime_factor_count", ())] == 1
    assert after[("proctor_worker_video_seconds_total", ())] == pytest.approx(10.0, abs=0.5)
    assert after[("proctor_queue_jobs", (("state", "queued"),))] == queued_before - 1
    assert after[handed_back] == 1, "the values are the worker's own: nothing counted twice"


def test_live_while_the_loop_ticks_and_ready_once_the_fanout_is_up(api: Api) -> None:
    clock = Clock()
    monitor = monitor_of(api, clock)
    with OpsServer("127.0.0.1", 0, monitor) as ops:
        url = f"http://127.0.0.1:{ops.port}"
        assert httpx.get(f"{url}/healthz").status_code == 200, "live while it starts"
        not_ready = httpx.get(f"{url}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.headers["content-type"] == "application/problem+json"
        assert not_ready.json()["code"] == "not_ready"
        assert not_ready.json()["details"]["failing"] == [{"dependency": "fan-out", "reason": "starting"}]

        monitor.fanout_up()
        monitor.tick()
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}

        clock.now += LIVE_POLLS * monitor.poll_s + 1  # the loop is stuck in a call that never returns
        stuck = httpx.get(f"{url}/healthz")
        assert stuck.status_code == 503 and stuck.json()["code"] == "not_live"
        assert "has not gone round" in stuck.json()["detail"]
        failing = httpx.get(f"{url}/readyz").json()["details"]["failing"]
        assert failing == [{"dependency": "job loop", "reason": "stalled"}]

        monitor.tick()
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/nothing").status_code == 404


def test_a_waiting_worker_ticks_at_every_poll(api: Api) -> None:
    """The real loop drives the liveness: `run_forever` with nothing to claim still ticks at every poll."""
    ticks: list[float] = []

    class Counting(WorkerMonitor):
        def tick(self) -> None:
            ticks.append(1.0)
            super().tick()

    class NothingQueued(JobQueue):  # PostgreSQL's queue is shared by the run: claim nobody else's job
        def claim(self, worker_id: str, session_id: str | None = None) -> ClaimedJob | None:
            return None

    readiness = DependencyChecks([Dependency("database", partial(ping_database, api.context.db))], 2.0)
    monitor = Counting(api.context.db, readiness, poll_s=0.05)
    stop = threading.Event()
    config = WorkerConfig(poll_s=0.05)
    queue = NothingQueued(api.context.db)
    idle = Worker(api.context.db, api.context.store, ClusterDown(), queue, config, hooks=monitor)
    loop = threading.Thread(target=idle.run_forever, args=(stop,))
    loop.start()
    try:
        threading.Event().wait(0.5)
    finally:
        stop.set()
        loop.join(10)
    assert len(ticks) >= 3 and monitor.not_live() is None
