"""Fan a session's chunks out to workers: Ray actors in production, the same class in a loop in tests.

`ChunkWorker` is a plain class: it loads the detectors once and analyses chunks read straight from object
storage with ranged GETs (MP4 and WebM both seek, so a worker reads only around its own chunk; no shared
filesystem, no full download). `RayFanout` wraps it in Ray actors that live as long as the fan-out, so
models load once per worker process, not per task. `LocalFanout` runs the same worker in-process.

The fan-out heals: an actor that dies is replaced and its chunk retried, so a lost node or a crash costs a
chunk's time, not the job. A chunk that kills `max_chunk_crashes` actors is the recording's fault (a decoder
that crashes on it) and fails as `ChunkFailed`, naming the chunk. A failure of the cluster itself (a lost
connection or object) raises `FanoutUnavailable`, and the next call starts on fresh actors. An analysis can
be cancelled from another thread (its job's deadline passed, or its worker is stopping); the actors still
busy with it are replaced, so no leftover task delays the next call.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from detectors import Signals
from pipelines.analysis import AnalysisConfig, ChunkAnalyzer
from pipelines.decode import Chunk, DecodeError
from storage.object_store import ObjectStore, S3Location

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
CANCEL_POLL_S = 0.2  # how soon a running analysis notices that it was cancelled


class ChunkFailed(RuntimeError):
    """A chunk could not be analysed; the message names the chunk and the reason."""

    def __init__(self, chunk: Chunk, reason: str) -> None:
        super().__init__(f"chunk {chunk.index} ({chunk.start_ms / 1000:.1f}-{chunk.end_ms / 1000:.1f} s): {reason}")
        self.chunk = chunk
        self.reason = reason


class AnalysisCancelled(RuntimeError):
    """The analysis was cancelled (by its `cancel` event) before every chunk was analysed."""


class FanoutUnavailable(RuntimeError):
    """The Ray cluster failed under the analysis (a lost connection, node or object), not the recording: hand the
    job back without counting an attempt; the fan-out starts its next call on fresh actors."""


class ChunkWorker:
    """One worker's detectors (loaded once) and its object-store connection."""

    def __init__(self, config: AnalysisConfig, location: S3Location) -> None:
        self._analyzer = ChunkAnalyzer(config)
        self._store = ObjectStore(location)

    def versions(self) -> dict[str, str]:
        return dict(self._analyzer.versions)

    def analyze(self, key: str, chunk: Chunk) -> tuple[int, Signals | str]:
        """(chunk index, signals), or (chunk index, reason) when the chunk cannot be decoded."""
        try:
            with self._store.open(key) as recording:
                return chunk.index, self._analyzer(recording, chunk)
        except DecodeError as exc:
            return chunk.index, str(exc)


class Fanout(Protocol):
    """What processing a session needs."""

    def versions(self) -> dict[str, str]: ...

    def analyze(self, key: str, chunks: Sequence[Chunk], on_progress: Progress | None = None) -> list[Signals]: ...


class CancellableFanout(Protocol):
    """What a job worker holds: a fan-out whose analysis another thread can cancel (raising `AnalysisCancelled`)."""

    def versions(self) -> dict[str, str]: ...

    def analyze(
        self,
        key: str,
        chunks: Sequence[Chunk],
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Signals]: ...


def _collect(
    results: dict[int, Signals | str],
    chunks: Sequence[Chunk],
    done: tuple[int, Signals | str],
    on_progress: Progress | None,
) -> None:
    index, outcome = done
    if isinstance(outcome, str):
        raise ChunkFailed(chunks[index], outcome)
    results[index] = outcome
    if on_progress is not None:
        on_progress(len(results), len(chunks))


def _in_order(results: dict[int, Signals | str], chunks: Sequence[Chunk]) -> list[Signals]:
    return [s for c in chunks if isinstance(s := results[c.index], Signals) and len(s)]


class LocalFanout:
    """The same worker, in this process, one chunk after another."""

    def __init__(self, config: AnalysisConfig, location: S3Location) -> None:
        self._worker = ChunkWorker(config, location)

    def versions(self) -> dict[str, str]:
        return self._worker.versions()

    def analyze(
        self,
        key: str,
        chunks: Sequence[Chunk],
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Signals]:
        results: dict[int, Signals | str] = {}
        for chunk in chunks:
            if cancel is not None and cancel.is_set():
                raise AnalysisCancelled(f"cancelled with {len(results)} of {len(chunks)} chunks analysed")
            _collect(results, chunks, self._worker.analyze(key, chunk), on_progress)
        return _in_order(results, chunks)


def resolve_device(requested: Literal["cpu", "cuda", "auto"], cluster_gpus: float) -> Literal["cpu", "cuda"]:
    """The device the actors run on. `auto` means CUDA exactly when the Ray cluster has GPUs to reserve, so
    ONNX Runtime never runs on a GPU that Ray did not give the actor (and that others may be using)."""
    if requested == "auto":
        return "cuda" if cluster_gpus > 0 else "cpu"
    return requested


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray; "auto" or "ray://head:10001": join a cluster
    workers: int = 2
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    gpu_per_worker: float = 0.25  # with device="cuda", workers share a GPU in these fractions
    max_chunk_crashes: int = 3  # a chunk that kills this many actors fails for good

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_chunk_crashes < 1:
            raise ValueError(f"max_chunk_crashes must be >= 1, got {self.max_chunk_crashes}")
        if not 0 < self.gpu_per_worker <= 1:
            raise ValueError(f"gpu_per_worker must be within (0, 1], got {self.gpu_per_worker}")


class RayFanout:
    """A pool of `ChunkWorker` actors that lives as long as this object (for a `proctor worker`, its life); an
    actor that dies is replaced. `worker` is the class each actor runs."""

    def __init__(
        self,
        config: AnalysisConfig,
        location: S3Location,
        options: RayOptions,
        worker: type[ChunkWorker] = ChunkWorker,
    ) -> None:
        import ray

        if not ray.is_initialized():
            if options.address is None:
                ray.init(include_dashboard=False, log_to_driver=False)  # a local cluster for this process
            else:
                ray.init(address=options.address)  # "auto", a GCS address on a node, or ray://head:10001
        cluster: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        device = resolve_device(options.device, float(cluster.get("GPU", 0)))
        if device == "cpu":
            # A CPU actor must not pick up a GPU through `auto`: Ray reserved none for it. (Where Ray does
            # reserve one, `auto` stays `auto`, so an onnxruntime without CUDA still falls back to the CPU.)
            runtime = replace(config.detectors.runtime, device="cpu")
            config = replace(config, detectors=replace(config.detectors, runtime=runtime))
        resources: dict[str, Any] = {"num_cpus": 1}
        if device == "cuda":
            resources["num_gpus"] = options.gpu_per_worker
        # Each actor holds one CPU; OpenCV would otherwise start a thread per core in every actor, and the
        # actors would fight over the cores (ONNX Runtime is held to one thread by RuntimeConfig).
        pinned = {"env_vars": {"OPENCV_FOR_THREADS_NUM": "1"}}
        # No restarts by Ray: a death reaches `analyze`, which counts it against the chunk and replaces the actor.
        actor: Any = ray.remote(max_restarts=0, max_task_retries=0, runtime_env=pinned, **resources)(worker)
        self._ray = ray
        self._options = options
        self._new_actor: Callable[[], Any] = lambda: actor.remote(config, location)
        self._actors: list[Any] = [self._new_actor() for _ in range(options.workers)]
        self._stale = False  # the cluster failed under the last call: start the next on fresh actors
        self._versions: dict[str, str] = dict(ray.get(self._actors[0].versions.remote()))
        log.info("ray fan-out ready", extra={"workers": options.workers, "device": device})

    def versions(self) -> dict[str, str]:
        return dict(self._versions)

    def analyze(
        self,
        key: str,
        chunks: Sequence[Chunk],
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Signals]:
        """Each actor runs one chunk at a time; a chunk whose actor died goes back to the front of the line."""
        from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, RaySystemError, WorkerCrashedError

        results: dict[int, Signals | str] = {}
        crashes: Counter[int] = Counter()
        waiting = deque(chunks)
        running: dict[Any, tuple[int, Chunk]] = {}  # task -> (actor slot, chunk)
        try:
            if self._stale:
                self._replace(range(len(self._actors)))
                self._stale = False
            idle = list(range(len(self._actors)))
            while waiting or running:
                if cancel is not None and cancel.is_set():
                    self._replace([slot for slot, _ in running.values()])
                    raise AnalysisCancelled(f"cancelled with {len(results)} of {len(chunks)} chunks analysed")
                while waiting and idle:
                    slot, chunk = idle.pop(), waiting.popleft()
                    running[self._actors[slot].analyze.remote(key, chunk)] = (slot, chunk)
                ready, _ = self._ray.wait(list(running), num_returns=1, timeout=CANCEL_POLL_S)
                for task in ready:
                    slot, chunk = running.pop(task)
                    try:
                        done = self._ray.get(task)
                    except RayActorError as died:
                        self._replace([slot])
                        crashes[chunk.index] += 1
                        self._after_crash(key, chunk, crashes[chunk.index], died)
                        waiting.appendleft(chunk)
                    else:
                        _collect(results, chunks, done, on_progress)
                    idle.append(slot)
        except (RaySystemError, ObjectLostError, NodeDiedError, WorkerCrashedError, ConnectionError) as exc:
            self._stale = True
            raise FanoutUnavailable(f"the Ray cluster failed during the analysis: {type(exc).__name__}: {exc}") from exc
        return _in_order(results, chunks)

    def _after_crash(self, key: str, chunk: Chunk, crashes: int, died: Exception) -> None:
        """Log an actor's death on `chunk`; raise `ChunkFailed` once the chunk has killed too many."""
        log.warning(
            "fan-out actor died; replaced",
            extra={"key": key, "chunk": chunk.index, "crashes": crashes, "error": str(died)[:500]},
        )
        if crashes >= self._options.max_chunk_crashes:
            raise ChunkFailed(
                chunk,
                f"the analysis process died on it {crashes} times (a decoder or detector crash on this part of the "
                "recording); not retried: re-encode the recording, or report it with the chunk's times",
            )

    def _replace(self, slots: Sequence[int]) -> None:
        """Kill the actors in `slots` (dead, hung or busy with a cancelled call) and start fresh ones there."""
        for slot in slots:
            with contextlib.suppress(Exception):  # it may be dead already, or its node gone
                self._ray.kill(self._actors[slot], no_restart=True)
            self._actors[slot] = self._new_actor()

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
