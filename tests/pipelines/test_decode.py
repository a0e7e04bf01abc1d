"""Chunk planning and sampled decoding, on a sample session built from real photos."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.decode import Chunk, DecodeOptions, decode_chunk, plan_chunks, to_rgb
from proctor.samples import SampleSession, build_sample_session


@pytest.mark.parametrize(
    ("duration", "keyframes", "target", "expected"),
    [
        (60_000, 2000, 30_000, [(0, 30_000), (30_000, 60_000)]),
        (61_000, 2000, 30_000, [(0, 30_000), (30_000, 60_000), (60_000, 61_000)]),
        (10_000, 2000, 30_000, [(0, 10_000)]),
        (60_000, 1500, 20_000, [(0, 19_500), (19_500, 39_000), (39_000, 58_500), (58_500, 60_000)]),
        (60_000, None, 25_000, [(0, 25_000), (25_000, 50_000), (50_000, 60_000)]),
        (60_000, 90_000, 30_000, [(0, 60_000)]),
    ],
)
def test_plan_chunks(duration: int, keyframes: int | None, target: int, expected: list[tuple[int, int]]) -> None:
    chunks = plan_chunks(duration, keyframes, target)
    assert [(c.start_ms, c.end_ms) for c in chunks] == expected
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_plan_chunks_refuses_empty_recordings() -> None:
    with pytest.raises(ValueError, match="must last > 0 ms"):
        plan_chunks(0, 2000)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("decode"), duration_s=20, fps=15, seed=1)


def stamps(source: Path, chunk: Chunk, **options: object) -> np.ndarray:
    batches = list(decode_chunk(source, chunk, DecodeOptions(**options)))  # type: ignore[arg-type]
    assert all(f.shape[1:] == (480, 640, 3) and f.dtype == np.uint8 for f, _ in batches)
    return np.concatenate([t for _, t in batches]) if batches else np.array([], dtype=np.int64)


def test_samples_at_the_requested_rate(sample: SampleSession) -> None:
    ts = stamps(sample.video_path, Chunk(0, 0, 20_000), sample_fps=5, skip_nonref=False)
    assert len(ts) == 100
    assert np.all(np.diff(ts) > 0)
    assert np.abs(np.diff(ts) - 200).max() <= 67, "one sample per 200 ms, within a source frame"


def test_chunks_tile_the_recording_without_duplicates(sample: SampleSession) -> None:
    chunks = plan_chunks(20_000, 2000, 6000)
    joined = np.concatenate([stamps(sample.video_path, c, sample_fps=5) for c in chunks])
    assert np.all(np.diff(joined) > 0), "no frame twice, in time order"
    whole = stamps(sample.video_path, Chunk(0, 0, 20_000), sample_fps=5)
    assert abs(len(joined) - len(whole)) <= len(chunks)
    for c in chunks:
        part = stamps(sample.video_path, c, sample_fps=5)
        assert part.min() >= c.start_ms and part.max() < c.end_ms


def test_decodes_from_a_file_object(sample: SampleSession) -> None:
    with sample.video_path.open("rb") as f:
        ts = stamps(f, Chunk(1, 8000, 12_000), sample_fps=2)  # type: ignore[arg-type]
    assert 7 <= len(ts) <= 8 and ts[0] >= 8000


def test_large_frames_are_scaled_down_in_the_decoder(tmp_path: Path) -> None:
    big = build_sample_session(tmp_path, duration_s=10, width=1280, height=720, seed=2)
    (frames, _), *_ = decode_chunk(big.video_path, Chunk(0, 0, 2000), DecodeOptions(max_side_px=640))
    assert frames.shape[1:] == (360, 640, 3)


def test_fast_rgb_conversion_matches_swscale(sample: SampleSession) -> None:
    """The OpenCV path for BT.601 4:2:0 frames gives swscale's picture within chroma rounding."""
    with av.open(str(sample.video_path)) as container:
        frames = [f for _, f in zip(range(10), container.decode(video=0), strict=False)]
    for frame in frames:
        assert frame.format.name == "yuv420p"
        fast = np.empty((frame.height, frame.width, 3), np.uint8)
        to_rgb(frame, fast, scale=False)
        reference = frame.to_ndarray(format="rgb24").astype(np.int16)
        diff = np.abs(fast.astype(np.int16) - reference)
        assert diff.mean() < 2.0 and np.percentile(diff, 99.9) <= 8


def test_each_batch_owns_its_pixels(sample: SampleSession) -> None:
    batches = list(decode_chunk(sample.video_path, Chunk(0, 0, 8000), DecodeOptions(sample_fps=5, batch_size=8)))
    assert len(batches) == 5 and [len(t) for _, t in batches] == [8, 8, 8, 8, 8]
    firsts = [f[0].copy() for f, _ in batches]
    for (frames, _), first in zip(batches, firsts, strict=True):
        np.testing.assert_array_equal(frames[0], first)  # a later batch did not overwrite an earlier one
