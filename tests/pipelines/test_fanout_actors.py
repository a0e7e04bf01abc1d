"""What the Ray actors are given and how long they live (issue 18): no S3 credentials reach the cluster, only a
presigned URL per chunk; and a job worker's actors are released once its queue has been empty a while, giving
their CPUs back to the cluster, and started again by the next job. On a real local Ray, reading the recording
from the real embedded S3.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.context import build_context
from core.settings import Settings
from detectors import Signals
from pipelines.analysis import AnalysisConfig
from pipelines.decode import Chunk, plan_chunks
from pipelines.fanout import RECORDING_URL_TTL_S, ChunkWorker, RayFanout, RayOptions, StorageUnreachable
from proctor import processing
from proctor.samples import SampleSession, build_sample_session
from proctor.wiring import job_queue
from storage.object_store import ObjectStore, S3Location
from storage.presigned_reader import PresignedObject
from tests.pipelines.conftest import RAY_CPUS, stored_recording

pytestmark = pytest.mark.slow

CPUS = RAY_CPUS
CHUNKS = plan_chunks(10_000, 2000, 4000)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("actors"), duration_s=10, seed=5)


@pytest.fixture
def recording(s3: S3Location, sample: SampleSession) -> Iterator[str]:
    key = stored_recording(s3, sample.video_path, "t-actors")
    yield key
    shutil.rmtree(arguments_kept(key), ignore_errors=True)


def arguments_kept(key: str) -> Path:
    """Where `ArgumentsKept` actors put what they were given for `key`'s chunks (an actor's memory is its own)."""
    return Path(tempfile.gettempdir()) / f"proctor-actor-arguments-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class ArgumentsKept(ChunkWorker):
    """A chunk worker that writes down, pickled, its constructor's arguments and each task's, as Ray gave them."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._constructed = pickle.dumps(args)

    def analyze(self, recording: PresignedObject, chunk: Chunk) -> tuple[int, Signals | str]:
        kept = arguments_kept(recording.key)
        kept.mkdir(exist_ok=True)
        (kept / f"{os.getpid()}-{chunk.index}").write_bytes(pickle.dumps((self._constructed, (recording, chunk))))
        return super().analyze(recording, chunk)


def free_cpus() -> float:
    import ray

    return float(ray.available_resources().get("CPU", 0.0))  # type: ignore[no-untyped-call]


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Ray frees and reserves resources asynchronously: wait for `condition`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.1)


@pytest.mark.timeout(300)
def test_the_actors_get_a_presigned_url_and_no_credentials(ray_cluster: None, s3: S3Location, recording: str) -> None:
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=2), worker=ArgumentsKept)
    try:
        signals = fanout.analyze(recording, CHUNKS)
    finally:
        fanout.close()
    assert len(signals) == len(CHUNKS)
    kept = sorted(arguments_kept(recording).iterdir())
    assert len(kept) == len(CHUNKS), "every task wrote down its arguments"
    for path in kept:
        constructed, (given, chunk) = pickle.loads(path.read_bytes())
        assert s3.secret_key.encode() not in constructed and s3.access_key.encode() not in constructed
        assert s3.secret_key.encode() not in pickle.dumps((given, chunk))
        # The task's one credential: a URL for this recording alone, signed for the endpoint the job worker
        # reaches S3 at, expiring. (It names the access key's id, as SigV4 does; that grants nothing alone.)
        assert isinstance(given, PresignedObject) and given.key == recording
        assert given.url.startswith(f"http://{s3.endpoint}/{s3.bucket}/{recording}?")
        assert f"X-Amz-Expires={RECORDING_URL_TTL_S}&" in given.url


@pytest.mark.timeout(300)
def test_an_idle_pool_is_released_and_started_again_by_the_next_call(
    ray_cluster: None, s3: S3Location, recording: str
) -> None:
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=2, idle_release_s=60))
    try:
        eventually(lambda: free_cpus() == 0, "both actors hold a CPU")
        held_during_the_call: list[bool] = []
        first = fanout.analyze(
            recording,
            CHUNKS,
            on_progress=lambda *_: held_during_the_call.append(fanout.release_if_idle(time.monotonic() + 3600)),
        )
        ended = time.monotonic()
        assert held_during_the_call == [False] * len(CHUNKS), "never released under a call"
        assert not fanout.release_if_idle(ended + 30), "idle for less than idle_release_s"
        assert free_cpus() == 0
        assert fanout.release_if_idle(ended + 61)
        eventually(lambda: free_cpus() == CPUS, "the released actors' CPUs are the cluster's again")
        assert not fanout.release_if_idle(ended + 120), "nothing left to release"
        again = fanout.analyze(recording, CHUNKS)
        eventually(lambda: free_cpus() == 0, "the next call started the actors again")
        assert [len(s) for s in again] == [len(s) for s in first] and len(again) == len(CHUNKS)
    finally:
        fanout.close()


@pytest.mark.timeout(300)
def test_a_pool_without_an_idle_limit_is_kept(ray_cluster: None, s3: S3Location) -> None:
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=1, idle_release_s=0))
    try:
        assert not fanout.release_if_idle(time.monotonic() + 7 * 24 * 3600)
        eventually(lambda: free_cpus() == CPUS - 1, "its one actor holds a CPU")
    finally:
        fanout.close()


@pytest.mark.timeout(300)
def test_a_worker_that_finds_the_queue_empty_releases_its_actors(
    ray_cluster: None, s3: S3Location, tmp_path: Path
) -> None:
    """`proctor worker`'s wiring: its loop offers the fan-out a release each time it finds no job."""
    database = f"sqlite:///{tmp_path / 'proctor.db'}"  # its own, empty queue
    context = build_context(Settings(data_dir=tmp_path / "data", database_url=database, worker_poll_s=0.1), s3)
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=2, idle_release_s=1))
    stop = threading.Event()
    loop = threading.Thread(target=processing.worker(context, fanout, job_queue(context)).run_forever, args=(stop,))
    try:
        eventually(lambda: free_cpus() == 0, "both actors hold a CPU")
        loop.start()
        eventually(lambda: free_cpus() == CPUS, "the idle worker released its actors")
    finally:
        stop.set()
        loop.join(30)
        fanout.close()
        context.close()


@pytest.mark.timeout(120)
def test_an_unreachable_object_store_is_the_infrastructures_failure(s3: S3Location) -> None:
    """An actor's reads that fail for want of the object store raise what the fan-out waits out, naming the chunk
    and the key, never the URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = ObjectStore(dataclasses.replace(s3, endpoint=f"127.0.0.1:{dead_port}"))
    target = PresignedObject("t/dead", dead.presigned_get("t/dead", 60))
    with pytest.raises(StorageUnreachable, match=r"^chunk 1 of t/dead: presigned GET 't/dead' failed") as failed:
        ChunkWorker(AnalysisConfig()).analyze(target, CHUNKS[1])
    assert "X-Amz-Signature" not in str(failed.value)
