"""`proctor worker`: claim jobs, process each session through the fan-out, heartbeat the lease meanwhile.

One job at a time per worker process; the parallelism is in the fan-out's Ray actors. A crash anywhere
loses nothing: the lease lapses, another worker claims the job, and processing writes its results so that
a second run replaces the first.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from pipelines.decode import DecodeError
from pipelines.fanout import ChunkFailed, Fanout
from pipelines.jobs import JobQueue, LeaseLost
from pipelines.process import NotProcessable, process_session
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)


def this_process() -> str:
    """A lease owner id for the calling process: host and pid, so forked workers never share one."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerConfig:
    chunk_target_ms: int = 30_000
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        if self.chunk_target_ms < 1 or self.poll_s <= 0:
            raise ValueError(f"WorkerConfig: need chunk_target_ms >= 1 and poll_s > 0, got {self}")


@dataclass
class Worker:
    db: sessionmaker[Session]
    store: ObjectStore
    fanout: Fanout
    queue: JobQueue
    config: WorkerConfig = field(default_factory=WorkerConfig)
    worker_id: str = field(default_factory=this_process)  # computed per Worker, in the process that runs it

    def run_one(self, session_id: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> bool:
        """Claim and process one job (of `session_id`, if given); False when there was none."""
        job = self.queue.claim(self.worker_id, session_id)
        if job is None:
            return False
        stop = threading.Event()
        beat = threading.Thread(target=self.queue.keep_alive, args=(job, self.worker_id, stop), daemon=True)
        beat.start()
        try:
            try:
                # The job is marked done in the transaction that publishes the results (after the lease check),
                # so results and job state never disagree, whatever happens to this process afterwards.
                process_session(
                    self.db,
                    self.store,
                    self.fanout,
                    job.session_id,
                    chunk_target_ms=self.config.chunk_target_ms,
                    on_progress=on_progress,
                    on_publish=lambda db: self.queue.complete(db, job, self.worker_id),
                )
            except LeaseLost:
                raise  # not a failure of the job: the worker that took it over decides the outcome
            except (ChunkFailed, DecodeError, NotProcessable) as exc:
                # The recording itself is at fault: retrying cannot help.
                self.queue.fail(job, self.worker_id, str(exc), retryable=False)
            except Exception as exc:  # anything else may be transient: retry with backoff
                log.exception("processing failed", extra={"session_id": job.session_id, "job_id": job.id})
                self.queue.fail(job, self.worker_id, f"{type(exc).__name__}: {exc}", retryable=True)
        except LeaseLost:
            # Another worker took the job over while this one was slow: its run decides the outcome.
            log.warning("lease lost before finishing", extra={"job_id": job.id, "session_id": job.session_id})
        finally:
            stop.set()
            beat.join()
        return True

    def run_forever(self, stop: threading.Event) -> None:
        """Claim and process jobs until `stop`. A database or storage error outside a job (a claim, recording a
        failure) is logged and retried after the poll interval: a worker outlives a database restart, and a
        job it could not record is taken over when its lease lapses."""
        log.info("worker started", extra={"worker": self.worker_id})
        while not stop.is_set():
            try:
                ran = self.run_one()
            except Exception:
                log.exception("worker loop failed; retrying", extra={"worker": self.worker_id})
                ran = False
            if not ran:
                stop.wait(self.config.poll_s)
