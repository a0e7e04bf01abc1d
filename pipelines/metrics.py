"""The job worker's health and metrics, from its hooks (`pipelines.worker.WorkerHooks`).

- Live: the worker's loop has gone round within `LIVE_POLLS` poll intervals (it ticks at every poll while
  idle, and every fraction of a second while it supervises a job), or it is still starting (connecting to
  Ray can take a while, and fails loudly if it cannot). A loop stuck in a hung call is not live: restart it.
- Ready: live, its fan-out is up, and the database answers within the timeout.
- Metrics, on a registry of its own (see `core.metrics`): the queue's depth per state, jobs per outcome, job
  latency from claim to done, the real-time factor of each job it finished (seconds of recording analysed per
  second of wall time), and failed attempts per reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.orm import Session, sessionmaker

from core.health import DependencyChecks, Failure
from core.metrics import registry_with_queue_depth
from pipelines.decode import DecodeError
from pipelines.fanout import ChunkFailed, FanoutUnavailable
from pipelines.process import NotProcessable
from pipelines.worker import JobEnded, JobOutcome, Verdict

LIVE_POLLS = 5  # a loop that has not gone round in this many poll intervals is stuck
LATENCY_BUCKETS_S = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
REALTIME_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


def failure_reason(ended: JobEnded) -> str | None:
    """Why an attempt at a job failed, from a closed list (a metric's label), or None if it did not fail.

    `chunk_failed`: a chunk could not be decoded, or crashed the analysis too often; `undecodable`: the
    recording could not be decoded at all; `not_processable`: nothing in it to analyse; `cluster_unavailable`:
    the Ray cluster failed under it (handed back, no attempt spent); `timed_out`: past its deadline; `error`:
    anything else (retried)."""
    if ended.verdict is Verdict.TIME_OUT:
        return "timed_out"
    if ended.outcome not in (JobOutcome.RETRY, JobOutcome.FAILED, JobOutcome.HANDED_BACK):
        return None
    error = ended.error
    if error is None:
        return None  # handed back on a stop request: not a failure
    for kind, reason in (
        (ChunkFailed, "chunk_failed"),
        (DecodeError, "undecodable"),
        (NotProcessable, "not_processable"),
        (FanoutUnavailable, "cluster_unavailable"),
    ):
        if isinstance(error, kind):
            return reason
    return "error"


def realtime_factor(recording_s: float | None, elapsed_s: float) -> float | None:
    """Seconds of recording processed per second of wall time, or None without a recording's duration."""
    if recording_s is None or recording_s <= 0 or elapsed_s <= 0:
        return None
    return recording_s / elapsed_s


def stalled(last_tick_s: float | None, now_s: float, poll_s: float) -> str | None:
    """Why the worker is not live, or None if it is: see the module's docstring."""
    if last_tick_s is None:
        return None  # still starting: the loop has not run yet
    quiet_s = now_s - last_tick_s
    if quiet_s <= LIVE_POLLS * poll_s:
        return None
    return f"the worker's loop has not gone round for {quiet_s:.0f} s ({LIVE_POLLS} poll intervals of {poll_s:g} s)"


class WorkerMonitor:
    """The worker's hooks: they keep its liveness, readiness and metrics (see the module's docstring)."""

    def __init__(
        self,
        db: sessionmaker[Session],
        readiness: DependencyChecks,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.readiness = readiness
        self.poll_s = poll_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_tick_s: float | None = None
        self._fanout_up = False
        self.registry: CollectorRegistry = registry_with_queue_depth(db)
        self.jobs = Counter(
            "proctor_worker_jobs", "Jobs this worker ended, per outcome", ["outcome"], registry=self.registry
        )
        self.job_seconds = Histogram(
            "proctor_worker_job_seconds",
            "Seconds from a job's claim to its being done (jobs that ended done)",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.realtime = Histogram(
            "proctor_worker_realtime_factor",
            "Seconds of recording processed per second of wall time, per job done",
            buckets=REALTIME_BUCKETS,
            registry=self.registry,
        )
        self.video_seconds = Counter(
            "proctor_worker_video_seconds", "Seconds of recording in the jobs done", registry=self.registry
        )
        self.failures = Counter(
            "proctor_worker_job_failures",
            "Failed attempts at jobs, per reason (chunk_failed: a chunk that could not be decoded or that crashed the "
            "analysis repeatedly; undecodable; not_processable; cluster_unavailable; timed_out; error)",
            ["reason"],
            registry=self.registry,
        )

    # -- hooks ------------------------------------------------------------------------------------------
    def tick(self) -> None:
        with self._lock:
            self._last_tick_s = self._clock()

    def job_ended(self, ended: JobEnded) -> None:
        self.jobs.labels(outcome=ended.outcome.value).inc()
        reason = failure_reason(ended)
        if reason is not None:
            self.failures.labels(reason=reason).inc()
        if ended.outcome is JobOutcome.DONE:
            self.job_seconds.observe(ended.elapsed_s)
            factor = realtime_factor(ended.job.recording_s, ended.elapsed_s)
            if factor is not None:
                self.realtime.observe(factor)
                self.video_seconds.inc(ended.job.recording_s or 0.0)

    def fanout_up(self) -> None:
        """The fan-out's actors are up: the worker can take jobs once its loop starts."""
        with self._lock:
            self._fanout_up = True

    # -- probes -----------------------------------------------------------------------------------------
    def not_live(self) -> str | None:
        """Why the worker is not live, or None."""
        with self._lock:
            last = self._last_tick_s
        return stalled(last, self._clock(), self.poll_s)

    def not_ready(self) -> list[Failure]:
        """What keeps the worker from taking jobs; empty when it is ready (blocks up to the readiness timeout)."""
        with self._lock:
            fanout_up = self._fanout_up
        failures = [] if fanout_up else [Failure("fan-out", "starting", "the Ray fan-out is not up yet")]
        stuck = self.not_live()
        if stuck is not None:
            failures.append(Failure("job loop", "stalled", stuck))
        return failures + self.readiness.failures()
