"""Chunks fanned out over a real local Ray cluster, reading the recording from the real embedded S3."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from models import load_manifest
from pipelines.analysis import AnalysisConfig
from pipelines.decode import plan_chunks
from pipelines.fanout import ChunkFailed, LocalFanout, RayFanout, RayOptions, resolve_device
from proctor.samples import SampleSession, build_sample_session
from storage.object_store import S3Location
from tests.pipelines.conftest import stored_recording

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("fanout"), duration_s=24, seed=3)


def stored(s3: S3Location, path: Path) -> str:
    return stored_recording(s3, path, "t-fanout")


def test_ray_and_the_plain_loop_give_the_same_signals(ray_cluster: None, s3: S3Location, sample: SampleSession) -> None:
    key = stored(s3, sample.video_path)
    chunks = plan_chunks(24_000, 2000, 6000)
    progress: list[tuple[int, int]] = []
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=2))
    try:
        remote = fanout.analyze(key, chunks, on_progress=lambda done, total: progress.append((done, total)))
        assert {k for k in fanout.versions() if not k.startswith("model:")} == {"face_analysis", "quality"}
        assert fanout.versions()["model:face_landmark"] == load_manifest()["face_landmark"].sha256[:12]
    finally:
        fanout.close()
    local = LocalFanout(AnalysisConfig(), s3).analyze(key, chunks)
    assert [len(s) for s in remote] == [len(s) for s in local] and len(remote) == len(chunks)
    for r, loc in zip(remote, local, strict=True):
        assert np.array_equal(r.timestamps_ms, loc.timestamps_ms)
        for name in loc.columns:
            np.testing.assert_allclose(r[name], loc[name], equal_nan=True, atol=1e-6)
    assert progress[-1] == (len(chunks), len(chunks))


@pytest.mark.timeout(180)  # a decoder stuck on the garbage would fail here, not hang the suite
def test_corrupt_bytes_fail_their_chunk_with_a_reason(
    ray_cluster: None, s3: S3Location, sample: SampleSession, tmp_path: Path
) -> None:
    data = bytearray(sample.video_path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 100_000] = os.urandom(100_000)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    key = stored(s3, broken)
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=2))
    try:
        with pytest.raises(ChunkFailed, match=r"chunk \d+ \(\d+\.\d-\d+\.\d s\): decoding .* failed: Invalid data"):
            fanout.analyze(key, plan_chunks(24_000, 2000, 6000))
    finally:
        fanout.close()


def test_a_failed_call_leaves_nothing_behind_for_the_next(
    ray_cluster: None, s3: S3Location, sample: SampleSession
) -> None:
    """A session whose chunks raise (here: its recording is gone) must not hand its leftover chunks, or their
    errors, to the next session the same worker processes."""
    chunks = plan_chunks(24_000, 2000, 6000)
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=2))
    try:
        with pytest.raises(Exception, match="no object at"):
            fanout.analyze(f"t-fanout/e/{uuid.uuid4().hex}/media/webcam", chunks)
        signals = fanout.analyze(stored(s3, sample.video_path), chunks)
        assert len(signals) == len(chunks)
    finally:
        fanout.close()


@pytest.mark.parametrize(
    ("requested", "cluster_gpus", "runs_on"),
    [
        ("cpu", 0, "cpu"),
        ("cpu", 2, "cpu"),
        ("cuda", 1, "cuda"),
        ("auto", 0, "cpu"),  # ONNX Runtime may offer CUDA here, but Ray has no GPU to reserve for the actor
        ("auto", 0.5, "cuda"),
    ],
)
def test_the_device_follows_what_ray_can_reserve(requested: str, cluster_gpus: float, runs_on: str) -> None:
    assert resolve_device(requested, cluster_gpus) == runs_on  # type: ignore[arg-type]
