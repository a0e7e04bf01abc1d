"""`proctor worker`: claim jobs, process each session through the fan-out (or re-score it from its stored signals:
a `RESCORE` job, `pipelines.rescore`), heartbeat the lease meanwhile.

One job at a time per worker process; the parallelism is in the fan-out's Ray actors. The job runs on a thread
of its own while the calling thread supervises it, because the lease's heartbeats alone would keep a hung job
for ever:
- past its deadline (from the recording's duration, `job_deadline_s`) the job fails as timed out, which spends
  its attempt (it is retried after a backoff while attempts remain), and its analysis is cancelled;
- once the worker is asked to stop (SIGTERM in a rolling update), a job that should end within the grace
  period is finished, and any other is cancelled and handed back: lease released, no attempt spent;
- a failure of the Ray cluster under the job (`FanoutUnavailable`) hands the job back after a backoff: the
  infrastructure, not the recording, failed.
A crash anywhere loses nothing: the lease lapses, another worker claims the job, and processing writes its
results so that a second run replaces the first.

`WorkerHooks` hear each turn of the loop and the end of each job (`pipelines.metrics` turns those into the
worker's liveness and its metrics); the worker runs the same without them. `release_idle` hears each turn that
found no job: the Ray fan-out's `release_if_idle`, which gives its actors back to the cluster once the queue
has been empty a while, so an autoscaler can shrink it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from core.vocabulary import JobKind
from detectors import Signals
from pipelines.decode import Chunk, DecodeError
from pipelines.fanout import CancellableFanout, ChunkFailed, FanoutUnavailable, Progress
from pipelines.jobs import ClaimedJob, JobQueue, LeaseLost
from pipelines.process import NotProcessable, process_session
from pipelines.rescore import finish_rescore_job, rescore_session
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)

SUPERVISE_TICK_S = 0.2  # how often the supervising thread looks at the job's deadline and the stop request


def this_process() -> str:
    """A lease owner id for the calling process: host and pid, so forked workers never share one."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerConfig:
    chunk_target_ms: int = 30_000
    poll_s: float = 2.0
    deadline_floor_s: float = 600.0  # the least time an attempt gets ...
    deadline_factor: float = 1.0  # ... else this many seconds per second of recording
    stop_grace_s: float = 8.0  # on a stop request, finish a job expected to end within this

    def __post_init__(self) -> None:
        if self.chunk_target_ms < 1 or self.poll_s <= 0:
            raise ValueError(f"WorkerConfig: need chunk_target_ms >= 1 and poll_s > 0, got {self}")
        if self.deadline_floor_s <= 0 or self.deadline_factor <= 0 or self.stop_grace_s < 0:
            raise ValueError(
                f"WorkerConfig: need deadline_floor_s > 0, deadline_factor > 0 and stop_grace_s >= 0, got {self}"
            )


def job_deadline_s(recording_s: float | None, config: WorkerConfig) -> float:
    """How long an attempt at a job may run: the floor, or the recording's duration times the factor if longer."""
    return max(config.deadline_floor_s, (recording_s or 0.0) * config.deadline_factor)


class Verdict(StrEnum):
    CARRY_ON = "carry_on"
    TIME_OUT = "time_out"
    HAND_BACK = "hand_back"


@dataclass(frozen=True)
class JobWatch:
    """What the supervisor knows of a running job at one moment."""

    elapsed_s: float  # since it was claimed
    deadline_s: float
    chunks_done: int
    chunks_total: int  # 0 until the first chunk is analysed
    stopping_for_s: float | None  # since the worker was asked to stop; None if it was not


def verdict(watch: JobWatch, grace_s: float) -> Verdict:
    """Past the deadline: time out. Asked to stop: carry on only while the job, at the pace of its chunks so far,
    should end before the grace period does (a job with no chunk analysed yet has no pace: hand it back)."""
    if watch.elapsed_s >= watch.deadline_s:
        return Verdict.TIME_OUT
    if watch.stopping_for_s is None:
        return Verdict.CARRY_ON
    if watch.chunks_done == 0 or watch.chunks_total == 0:
        return Verdict.HAND_BACK
    left_s = watch.elapsed_s * (watch.chunks_total - watch.chunks_done) / watch.chunks_done
    return Verdict.CARRY_ON if left_s <= grace_s - watch.stopping_for_s else Verdict.HAND_BACK


class JobOutcome(StrEnum):
    DONE = "done"
    RETRY = "retry"  # this attempt failed; the job is queued again after a backoff
    FAILED = "failed"  # failed for good
    HANDED_BACK = "handed_back"  # released without spending an attempt (stopping, or the cluster failed)
    LEASE_LOST = "lease_lost"  # another worker took it over


@dataclass(frozen=True)
class JobEnded:
    """What hooks hear when a job ends: the facts, from which they derive what they need."""

    job: ClaimedJob
    outcome: JobOutcome
    verdict: Verdict  # TIME_OUT or HAND_BACK if the supervisor gave the job up, else CARRY_ON
    error: BaseException | None  # what the job's thread raised, if anything
    elapsed_s: float  # from the claim to the outcome's being recorded


class WorkerHooks(Protocol):
    def tick(self) -> None:
        """The loop went round: waiting for work, or supervising a job (every `SUPERVISE_TICK_S`)."""

    def job_ended(self, ended: JobEnded) -> None: ...


@dataclass
class _JobRun:
    """A job's progress and outcome, written by its thread and read by the supervisor."""

    chunks_done: int = 0
    chunks_total: int = 0
    error: BaseException | None = None

    def progress(self, done: int, total: int) -> None:
        self.chunks_done, self.chunks_total = done, total


@dataclass(frozen=True)
class _JobFanout:
    """The worker's fan-out as one job sees it: its analysis stops when the job's `cancel` is set."""

    fanout: CancellableFanout
    cancel: threading.Event

    def versions(self) -> dict[str, str]:
        return self.fanout.versions()

    def analyze(self, key: str, chunks: Sequence[Chunk], on_progress: Progress | None = None) -> list[Signals]:
        return self.fanout.analyze(key, chunks, on_progress, cancel=self.cancel)


@dataclass
class Worker:
    db: sessionmaker[Session]
    store: ObjectStore
    fanout: CancellableFanout
    queue: JobQueue
    config: WorkerConfig = field(default_factory=WorkerConfig)
    worker_id: str = field(default_factory=this_process)  # computed per Worker, in the process that runs it
    hooks: WorkerHooks | None = None
    release_idle: Callable[[float], bool] | None = None  # called with `time.monotonic()` when no job was found

    def run_one(
        self,
        session_id: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> bool:
        """Claim and process one job (of `session_id`, if given); False when there was none. Setting `stop` asks
        for the job to be finished or handed back (see the module's docstring)."""
        job = self.queue.claim(self.worker_id, session_id)
        if job is None:
            return False
        claimed_at = time.monotonic()
        beating = threading.Event()
        beat = threading.Thread(target=self.queue.keep_alive, args=(job, self.worker_id, beating), daemon=True)
        cancel, run = threading.Event(), _JobRun()
        runner = threading.Thread(
            target=self._process, args=(job, run, _JobFanout(self.fanout, cancel), on_progress), daemon=True
        )
        beat.start()
        runner.start()
        supervised, outcome = Verdict.CARRY_ON, JobOutcome.LEASE_LOST  # the outcome unless one is recorded
        try:
            supervised = self._supervise(job, runner, run, stop)
            beating.set()  # before the job is given up, so no heartbeat reports the lease lost
            beat.join()
            if supervised is Verdict.CARRY_ON:  # the job's thread ended
                outcome = self._record(job, run.error)
            elif supervised is Verdict.TIME_OUT:
                deadline = job_deadline_s(job.recording_s, self.config)
                retry = self.queue.fail(job, self.worker_id, _timed_out(job, deadline, run), retryable=True)
                outcome = JobOutcome.RETRY if retry else JobOutcome.FAILED
            else:
                self.queue.release(job, self.worker_id)
                outcome = JobOutcome.HANDED_BACK
        except LeaseLost:
            # Another worker took the job over while this one was slow, or it ended as it was given up: the
            # database says which, and this worker has nothing more to record.
            log.warning("lease lost before finishing", extra={"job_id": job.id, "session_id": job.session_id})
        finally:
            beating.set()
            cancel.set()  # a job given up stops its analysis (its actors are replaced); an ended one is unaffected
            runner.join()
            beat.join()
        if self.hooks is not None:
            self.hooks.job_ended(JobEnded(job, outcome, supervised, run.error, time.monotonic() - claimed_at))
        return True

    def _process(
        self, job: ClaimedJob, run: _JobRun, fanout: _JobFanout, on_progress: Callable[[int, int], None] | None
    ) -> None:
        def progress(done: int, total: int) -> None:
            run.progress(done, total)
            if on_progress is not None:
                on_progress(done, total)

        try:
            # The job is marked done in the transaction that publishes the results (after the lease check),
            # so results and job state never disagree, whatever happens to this process afterwards.
            if job.kind == JobKind.RESCORE:  # the stored signals under the current policy: no decoding, no fan-out
                rescore_session(
                    self.db,
                    self.store,
                    job.session_id,
                    on_publish=lambda db: finish_rescore_job(db, job, self.worker_id),
                )
                return
            process_session(
                self.db,
                self.store,
                fanout,
                job.session_id,
                chunk_target_ms=self.config.chunk_target_ms,
                on_progress=progress,
                on_publish=lambda db: self.queue.complete(db, job, self.worker_id),
            )
        except BaseException as exc:  # recorded by the supervising thread
            run.error = exc

    def _supervise(
        self, job: ClaimedJob, runner: threading.Thread, run: _JobRun, stop: threading.Event | None
    ) -> Verdict:
        """Wait for the job's thread; `CARRY_ON` once it has ended, else why the job must be given up."""
        started, stopping_since = time.monotonic(), None
        deadline = job_deadline_s(job.recording_s, self.config)
        while True:
            runner.join(SUPERVISE_TICK_S)
            if self.hooks is not None:
                self.hooks.tick()
            if not runner.is_alive():
                return Verdict.CARRY_ON
            now = time.monotonic()
            if stop is not None and stop.is_set() and stopping_since is None:
                stopping_since = now
                log.info("stop requested during a job", extra={"job_id": job.id, "session_id": job.session_id})
            watch = JobWatch(
                now - started,
                deadline,
                run.chunks_done,
                run.chunks_total,
                None if stopping_since is None else now - stopping_since,
            )
            outcome = verdict(watch, self.config.stop_grace_s)
            if outcome is not Verdict.CARRY_ON:
                log.warning(
                    "giving the job up",
                    extra={"job_id": job.id, "session_id": job.session_id, "verdict": outcome.value},
                )
                return outcome

    def _record(self, job: ClaimedJob, error: BaseException | None) -> JobOutcome:
        """Record how the job's thread ended (a success was recorded as it published)."""
        if error is None:
            return JobOutcome.DONE
        if isinstance(error, LeaseLost):
            return JobOutcome.LEASE_LOST  # taken over, and the worker that took it decides the outcome
        if isinstance(error, FanoutUnavailable):  # the cluster failed, not the recording
            self.queue.release(job, self.worker_id, after=self.queue.policy.backoff(1), reason=str(error))
            return JobOutcome.HANDED_BACK
        if isinstance(error, ChunkFailed | DecodeError | NotProcessable):
            # The recording itself is at fault: retrying cannot help.
            self.queue.fail(job, self.worker_id, f"session {job.session_id}: {error}", retryable=False)
            return JobOutcome.FAILED
        # Anything else may be transient: retry with backoff.
        log.error(
            "processing failed",
            extra={"session_id": job.session_id, "job_id": job.id},
            exc_info=(type(error), error, error.__traceback__),
        )
        retry = self.queue.fail(job, self.worker_id, f"{type(error).__name__}: {error}", retryable=True)
        return JobOutcome.RETRY if retry else JobOutcome.FAILED

    def run_forever(self, stop: threading.Event) -> None:
        """Claim and process jobs until `stop` (which also finishes or hands back the job in hand). A database or
        storage error outside a job (a claim, recording a failure) is logged and retried after the poll interval:
        a worker outlives a database restart, and a job it could not record is taken over when its lease lapses."""
        log.info("worker started", extra={"worker": self.worker_id})
        while not stop.is_set():
            if self.hooks is not None:
                self.hooks.tick()
            try:
                ran = self.run_one(stop=stop)
                if not ran and self.release_idle is not None:
                    self.release_idle(time.monotonic())
            except Exception:
                log.exception("worker loop failed; retrying", extra={"worker": self.worker_id})
                ran = False
            if not ran:
                stop.wait(self.config.poll_s)


def _timed_out(job: ClaimedJob, deadline_s: float, run: _JobRun) -> str:
    recording = "no recording" if job.recording_s is None else f"a {job.recording_s:.0f} s recording"
    return (
        f"timed out: not done {deadline_s:.0f} s after it was claimed (the deadline for {recording}), with "
        f"{run.chunks_done} of {run.chunks_total or '?'} chunks analysed; raise PROCTOR_JOB_DEADLINE_FACTOR or "
        "PROCTOR_JOB_DEADLINE_FLOOR_S if the workers are this slow"
    )
