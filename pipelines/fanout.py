"""Fan a session's chunks out to workers: Ray actors in production, the same class in a loop in tests.

`ChunkWorker` is a plain class: it loads the detectors once and analyses chunks read straight from object
storage with ranged GETs (MP4 and WebM both seek, so a worker reads only around its own chunk; no shared
filesystem, no full download). `RayFanout` wraps it in Ray actors that live as long as the fan-out, so
models load once per worker process, not per task; an actor that dies is restarted and its task retried
by Ray. `LocalFanout` runs the same worker in-process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from detectors import Signals
from pipelines.analysis import AnalysisConfig, ChunkAnalyzer
from pipelines.decode import Chunk, DecodeError
from storage.object_store import ObjectStore, S3Location

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class ChunkFailed(RuntimeError):
    """A chunk could not be analysed; the message names the chunk and the reason."""

    def __init__(self, chunk: Chunk, reason: str) -> None:
        super().__init__(f"chunk {chunk.index} ({chunk.start_ms / 1000:.1f}-{chunk.end_ms / 1000:.1f} s): {reason}")
        self.chunk = chunk
        self.reason = reason


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
    def versions(self) -> dict[str, str]: ...

    def analyze(self, key: str, chunks: Sequence[Chunk], on_progress: Progress | None = None) -> list[Signals]: ...


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

    def analyze(self, key: str, chunks: Sequence[Chunk], on_progress: Progress | None = None) -> list[Signals]:
        results: dict[int, Signals | str] = {}
        for chunk in chunks:
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
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 0 < self.gpu_per_worker <= 1:
            raise ValueError(f"gpu_per_worker must be within (0, 1], got {self.gpu_per_worker}")


class RayFanout:
    """A pool of `ChunkWorker` actors that lives as long as this object (for a `proctor worker`, its life)."""

    def __init__(self, config: AnalysisConfig, location: S3Location, options: RayOptions) -> None:
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
        actor: Any = ray.remote(
            max_restarts=options.max_retries, max_task_retries=options.max_retries, runtime_env=pinned, **resources
        )(ChunkWorker)
        self._ray = ray
        self._actors: list[Any] = [actor.remote(config, location) for _ in range(options.workers)]
        self._versions: dict[str, str] = dict(ray.get(self._actors[0].versions.remote()))
        log.info("ray fan-out ready", extra={"workers": options.workers, "device": device})

    def versions(self) -> dict[str, str]:
        return dict(self._versions)

    def analyze(self, key: str, chunks: Sequence[Chunk], on_progress: Progress | None = None) -> list[Signals]:
        results: dict[int, Signals | str] = {}
        # A pool per call: when a chunk fails, this call's unsubmitted chunks go with its pool, and the chunks
        # still running finish on their actors with no one collecting them. A pool shared across calls would
        # hand the next session those leftovers first, and raise their errors as its own.
        from ray.util import ActorPool

        pool = ActorPool(self._actors)
        for done in pool.map_unordered(lambda a, c: a.analyze.remote(key, c), list(chunks)):
            _collect(results, chunks, done, on_progress)
        return _in_order(results, chunks)

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
