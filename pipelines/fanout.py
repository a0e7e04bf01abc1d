"""Fan a session's chunks out to workers: Ray actors in production, the same class in a loop in tests.

`ChunkWorker` is a plain class: it loads the detectors once and analyses chunks read straight from object
storage with ranged GETs (MP4 and WebM both seek, so a worker reads only around its own chunk; no shared
filesystem, no full download). It holds no S3 credentials: what an actor is given travels to the Ray cluster
and sits in its object store, so this process (the job worker, which holds them) signs a GET URL for the
recording each time it hands a chunk out (`RecordingUrls`), and the actor reads through that URL alone, which
grants that one object for `url_ttl_s`. `RayFanout` wraps the worker in Ray actors, so models load once per
actor, not per task; a pool left without a call for `idle_release_s` is released, so that a Ray autoscaler can
take its nodes back while the queue is empty, and the next call starts it again (the models load anew).
`LocalFanout` runs the same worker in-process.

The fan-out heals: an actor that dies is replaced and its chunk retried, so a lost node or a crash costs a
chunk's time, not the job. A chunk that kills `max_chunk_crashes` actors is the recording's fault (a decoder
that crashes on it) and fails as `ChunkFailed`, naming the chunk. A failure of the infrastructure (a lost
object or node, a `ray://` connection dropped by a head restart, an object-store outage) is waited out: the
pool is rebuilt, reconnecting first where it came through `ray://`, and the chunks in flight are redone; one
that lasts past `heal_s` raises `FanoutUnavailable`, and the next call starts on a rebuilt pool. An analysis can
be cancelled from another thread (its job's deadline passed, or its worker is stopping); the actors still
busy with it are replaced, so no leftover task delays the next call.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from detectors import Signals
from pipelines.analysis import AnalysisConfig, ChunkAnalyzer
from pipelines.decode import Chunk, DecodeError
from storage.object_store import ObjectStore, S3Location, StorageUnavailable
from storage.presigned_reader import PresignedObject, PresignedReads

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
CANCEL_POLL_S = 0.2  # how soon a running analysis notices that it was cancelled
HEAL_MAX_DELAY_S = 8.0  # the longest pause between tries to rebuild the pool
RECORDING_URL_TTL_S = 3600  # a chunk's recording URL is signed as the chunk is handed out: it outlives its analysis
MAX_URL_TTL_S = 7 * 24 * 3600  # the longest that S3 lets a presigned URL live


class ChunkFailed(RuntimeError):
    """A chunk could not be analysed; the message names the chunk and the reason."""

    def __init__(self, chunk: Chunk, reason: str) -> None:
        super().__init__(f"chunk {chunk.index} ({chunk.start_ms / 1000:.1f}-{chunk.end_ms / 1000:.1f} s): {reason}")
        self.chunk = chunk
        self.reason = reason


class AnalysisCancelled(RuntimeError):
    """The analysis was cancelled (by its `cancel` event) before every chunk was analysed."""


class FanoutUnavailable(RuntimeError):
    """The infrastructure failed under the analysis (the Ray cluster, the connection to it, or the object store) and
    did not recover in time, not the recording: hand the job back without counting an attempt; the fan-out starts
    its next call on a rebuilt pool."""


class StorageUnreachable(RuntimeError):
    """An actor could not read the recording: the object store did not answer within its retries. An actor raises
    this in place of `StorageUnavailable`, whose constructor's arguments do not survive the pickling that takes a
    task's exception back to the caller (a `ray://` client gets an `UnserializableException` instead)."""


class ChunkWorker:
    """One worker's detectors (loaded once) and its HTTP connections; it reads each chunk's recording through the
    presigned URL that comes with the chunk, and holds no S3 credentials."""

    def __init__(self, config: AnalysisConfig) -> None:
        self._analyzer = ChunkAnalyzer(config)
        self._reads = PresignedReads()

    def versions(self) -> dict[str, str]:
        return dict(self._analyzer.versions)

    def analyze(self, recording: PresignedObject, chunk: Chunk) -> tuple[int, Signals | str]:
        """(chunk index, signals), or (chunk index, reason) when the chunk cannot be decoded."""
        try:
            with self._reads.open(recording) as source:
                return chunk.index, self._analyzer(source, chunk)
        except DecodeError as exc:
            return chunk.index, str(exc)
        except StorageUnavailable as exc:
            raise StorageUnreachable(f"chunk {chunk.index} of {recording.key}: {exc}") from None


class RecordingUrls:
    """Signs recordings' GET URLs for the actors, in this process, which holds the S3 credentials. They are signed
    for `location`'s endpoint, the one this process reaches S3 at and the actors with it, never for the public
    endpoint that browsers use (the store here is built without it); signing sends no request."""

    def __init__(self, location: S3Location, ttl_s: int) -> None:
        if not 1 <= ttl_s <= MAX_URL_TTL_S:
            raise ValueError(f"a recording URL's lifetime must be within 1-{MAX_URL_TTL_S} s (S3's), got {ttl_s}")
        self._store, self._ttl_s = ObjectStore(location), ttl_s

    def __call__(self, key: str) -> PresignedObject:
        return PresignedObject(key, self._store.presigned_get(key, self._ttl_s))


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
    """The same worker, in this process, one chunk after another, reading through the same signed URLs."""

    def __init__(self, config: AnalysisConfig, location: S3Location, *, url_ttl_s: int = RECORDING_URL_TTL_S) -> None:
        self._urls = RecordingUrls(location, url_ttl_s)
        self._worker = ChunkWorker(config)

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
            _collect(results, chunks, self._worker.analyze(self._urls(key), chunk), on_progress)
        return _in_order(results, chunks)


def resolve_device(requested: Literal["cpu", "cuda", "auto"], cluster_gpus: float) -> Literal["cpu", "cuda"]:
    """The device the actors run on. `auto` means CUDA exactly when the Ray cluster has GPUs to reserve, so
    ONNX Runtime never runs on a GPU that Ray did not give the actor (and that others may be using)."""
    if requested == "auto":
        return "cuda" if cluster_gpus > 0 else "cpu"
    return requested


def heal_delay_s(failures: int) -> float:
    """The pause after the `failures`th infrastructure failure (1, 2, ...) of one streak: 1, 2, 4, 8, 8, ... s."""
    return float(min(HEAL_MAX_DELAY_S, 2 ** (failures - 1)))


def infrastructure_failure(error: BaseException) -> Literal["cluster", "storage"] | None:
    """Which infrastructure failed under an analysis, if `error` says one did (else it is the recording's, or a
    bug): the Ray cluster (a lost node, object or worker process) or the connection to it (a `ray://` client's gRPC
    channel), or the object store that an actor reads the recording from."""
    import grpc
    from ray.exceptions import NodeDiedError, ObjectLostError, RaySystemError, WorkerCrashedError

    # A task's exception reaches the caller as a RayTaskError that is also an instance of its cause, or, where the
    # cause's class cannot be subclassed, only holds it: look at both.
    if isinstance(error, StorageUnreachable) or isinstance(getattr(error, "cause", None), StorageUnreachable):
        return "storage"
    cluster = (RaySystemError, ObjectLostError, NodeDiedError, WorkerCrashedError, ConnectionError, grpc.RpcError)
    return "cluster" if isinstance(error, cluster) else None


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray; "auto" or "ray://head:10001": join a cluster
    workers: int = 2
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    gpu_per_worker: float = 0.25  # with device="cuda", workers share a GPU in these fractions
    max_chunk_crashes: int = 3  # a chunk that kills this many actors fails for good
    heal_s: float = 120.0  # the longest streak of infrastructure failures one call waits out
    url_ttl_s: int = RECORDING_URL_TTL_S  # how long the URL an actor reads a chunk's recording through lives
    idle_release_s: float = 300.0  # release the actors after this long without a call; 0: keep them

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_chunk_crashes < 1:
            raise ValueError(f"max_chunk_crashes must be >= 1, got {self.max_chunk_crashes}")
        if not 0 < self.gpu_per_worker <= 1:
            raise ValueError(f"gpu_per_worker must be within (0, 1], got {self.gpu_per_worker}")
        if self.heal_s < 0:
            raise ValueError(f"heal_s must be >= 0, got {self.heal_s}")
        if self.idle_release_s < 0:
            raise ValueError(f"idle_release_s must be >= 0 (0 keeps the actors), got {self.idle_release_s}")

    @property
    def client(self) -> bool:
        """Whether Ray is reached through its client server (`ray://`): a connection that drops when the head
        restarts and can be made again. A driver on a node (a GCS address, "auto", a local Ray) dies with that
        node's raylet instead, and its supervisor starts it again."""
        return self.address is not None and self.address.startswith("ray://")


@dataclass
class _Call:
    """One `analyze` call's progress, kept while the pool is rebuilt under it."""

    key: str
    chunks: Sequence[Chunk]
    on_progress: Progress | None
    cancel: threading.Event | None
    results: dict[int, Signals | str] = field(default_factory=dict)
    crashes: Counter[int] = field(default_factory=Counter)
    waiting: deque[Chunk] = field(default_factory=deque)
    running: dict[Any, tuple[int, Chunk]] = field(default_factory=dict)  # task -> (actor slot, chunk)

    def __post_init__(self) -> None:
        self.waiting.extend(self.chunks)

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def redo_running(self) -> None:
        """Put the chunks in flight back at the front of the line, to be redone once the pool is whole again."""
        self.waiting.extendleft(reversed([chunk for _, chunk in self.running.values()]))
        self.running.clear()


class RayFanout:
    """A pool of `ChunkWorker` actors. An actor that dies is replaced, and an actor gets chunks only once it is up:
    a replacement that waits for room on the cluster (its node died and no other has a free CPU) holds up nothing.
    `worker` is the class each actor runs; `location` stays in this process, to sign the actors' URLs. The pool
    lives until `close`, except that `release_if_idle` kills it after `idle_release_s` without a call (a
    `proctor worker` asks each time it finds the queue empty), and the next call starts it again.

    When the infrastructure fails under a call (`infrastructure_failure`), the call pauses (`heal_delay_s`), rebuilds
    the pool, reconnecting first if it reaches Ray through `ray://`, and redoes the chunks that were in flight; the
    chunks already analysed are kept. A streak of failures that would outlast `heal_s` raises `FanoutUnavailable`,
    and the next call starts by rebuilding the pool."""

    def __init__(
        self,
        config: AnalysisConfig,
        location: S3Location,
        options: RayOptions,
        worker: type[ChunkWorker] = ChunkWorker,
    ) -> None:
        import ray

        self._urls = RecordingUrls(location, options.url_ttl_s)
        self._ray = ray
        self._options = options
        if not ray.is_initialized():
            self._connect()
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
        self._actor_options: dict[str, Any] = {
            "max_restarts": 0,
            "max_task_retries": 0,
            "runtime_env": pinned,
            **resources,
        }
        self._worker, self._config = worker, config
        self._actor_class: Any = ray.remote(**self._actor_options)(worker)
        self._actors: dict[int, Any] = {}  # slot -> actor
        self._starting: dict[int, Any] = {}  # slot -> its actor's first call, until that answers
        self._replace(range(options.workers))
        self._stale = False  # the infrastructure failed under the last call: start the next on a rebuilt pool
        self._versions: dict[str, str] = dict(ray.get(self._starting[0]))
        self._busy = threading.Lock()  # held by a call, so the pool is never released under one
        self._last_call = time.monotonic()  # when the last call ended (or the pool started)
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
        with self._busy:
            try:
                return self._analyze(_Call(key, chunks, on_progress, cancel))
            finally:
                self._last_call = time.monotonic()

    def release_if_idle(self, now: float) -> bool:
        """Kill the actors if no call has used them for `idle_release_s` before `now` (`time.monotonic()`'s), so
        their CPUs and GPUs go back to the cluster; the next call starts them again. True if it released them."""
        if self._options.idle_release_s <= 0 or not self._busy.acquire(blocking=False):
            return False
        try:
            if not self._actors or now - self._last_call < self._options.idle_release_s:
                return False
            self.close()
            log.info("ray fan-out idle; actors released", extra={"idle_s": round(now - self._last_call, 1)})
            return True
        finally:
            self._busy.release()

    def _analyze(self, call: _Call) -> list[Signals]:
        key, chunks, cancel = call.key, call.chunks, call.cancel
        failures, streak_started, done_then = 0, 0.0, -1
        while True:
            if call.cancelled:  # nothing is in flight here: the pool is being rebuilt
                raise AnalysisCancelled(f"cancelled with {len(call.results)} of {len(chunks)} chunks analysed")
            try:
                if self._stale:
                    self._rebuild()
                elif not self._actors:  # released while idle
                    self._replace(range(self._options.workers))
                self._run(call)
                return _in_order(call.results, chunks)
            except Exception as exc:
                failed = infrastructure_failure(exc)
                if failed is None:
                    raise
                # The actors outlive an object-store outage; a failure of the cluster may have taken them with it.
                self._stale = self._stale or failed == "cluster"
                call.redo_running()
                now = time.monotonic()
                if len(call.results) != done_then:  # chunks were analysed since the last failure: a new streak
                    failures, streak_started, done_then = 0, now, len(call.results)
                failures += 1
                delay = heal_delay_s(failures)
                if now + delay - streak_started > self._options.heal_s:
                    raise FanoutUnavailable(
                        f"the infrastructure failed during the analysis and did not recover within "
                        f"{self._options.heal_s:.0f} s: {type(exc).__name__}: {exc}"
                    ) from exc
                log.warning(
                    "infrastructure failed under the analysis; waiting it out",
                    extra={
                        "key": key,
                        "failed": failed,
                        "failures": failures,
                        "delay_s": delay,
                        "error": f"{type(exc).__name__}: {exc}"[:500],
                    },
                )
                if cancel is not None:
                    cancel.wait(delay)
                else:
                    time.sleep(delay)

    def _run(self, call: _Call) -> None:
        """Analyse the call's waiting chunks on the actors that are up, taking in the actors that come up."""
        from ray.exceptions import RayActorError

        starting = {task: slot for slot, task in self._starting.items()}
        idle = [slot for slot in self._actors if slot not in self._starting]
        while call.waiting or call.running:
            if call.cancelled:
                self._replace([slot for slot, _ in call.running.values()])
                call.running.clear()
                raise AnalysisCancelled(f"cancelled with {len(call.results)} of {len(call.chunks)} chunks analysed")
            while call.waiting and idle:
                slot, chunk = idle.pop(), call.waiting.popleft()
                recording = self._urls(call.key)  # signed as it is handed out, so it outlives the chunk's analysis
                call.running[self._actors[slot].analyze.remote(recording, chunk)] = (slot, chunk)
            ready, _ = self._ray.wait([*call.running, *starting], num_returns=1, timeout=CANCEL_POLL_S)
            for task in ready:
                if task in starting:
                    slot = starting.pop(task)
                    try:
                        self._ray.get(task)
                    except RayActorError as died:  # its node died as it started
                        log.warning("fan-out actor died starting; replaced", extra={"error": str(died)[:500]})
                        self._replace([slot])
                        starting[self._starting[slot]] = slot
                    else:
                        del self._starting[slot]
                        idle.append(slot)
                    continue
                slot, chunk = call.running[task]  # left there if the cluster fails: `redo_running` takes it back
                try:
                    done = self._ray.get(task)
                except RayActorError as died:
                    del call.running[task]
                    self._replace([slot])
                    starting[self._starting[slot]] = slot
                    call.crashes[chunk.index] += 1
                    self._after_crash(call.key, chunk, call.crashes[chunk.index], died)
                    call.waiting.appendleft(chunk)
                else:
                    del call.running[task]
                    _collect(call.results, call.chunks, done, call.on_progress)
                    idle.append(slot)

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

    def _connect(self) -> None:
        if self._options.address is None:
            self._ray.init(include_dashboard=False, log_to_driver=False)  # a local cluster for this process
        else:
            self._ray.init(address=self._options.address)  # "auto", a GCS address on a node, or ray://head:10001

    def _rebuild(self) -> None:
        """A fresh pool; through `ray://`, on a fresh connection (the old one may have dropped with the head, and
        the actors and the class registered through it are gone with it)."""
        if self._options.client:
            self._ray.shutdown()
            self._connect()
            self._actor_class = self._ray.remote(**self._actor_options)(self._worker)
            self._actors, self._starting = {}, {}
            log.info("reconnected to the ray cluster", extra={"address": self._options.address})
        self._replace(range(self._options.workers))
        self._stale = False

    def _replace(self, slots: Iterable[int]) -> None:
        """Kill the actors in `slots` (dead, hung or busy with a cancelled call) and start fresh ones there."""
        for slot in slots:
            if slot in self._actors:
                with contextlib.suppress(Exception):  # it may be dead already, or its node gone
                    self._ray.kill(self._actors[slot], no_restart=True)
            self._actors[slot] = self._actor_class.remote(self._config)
            self._starting[slot] = self._actors[slot].versions.remote()

    def close(self) -> None:
        for actor in self._actors.values():
            with contextlib.suppress(Exception):  # the cluster may be gone already
                self._ray.kill(actor)
        self._actors, self._starting = {}, {}
