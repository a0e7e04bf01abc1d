"""Verifying an upload in one pass: the probe reads from storage while the bytes are hashed."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.hashing import HashingReader
from ingest.probe import ProbeLimits, probe_video
from tests.support import media as mf


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=5000),
    reads=st.lists(st.tuples(st.integers(0, 5200), st.integers(1, 700)), max_size=20),
)
def test_digest_is_of_the_whole_object_whatever_the_read_order(data: bytes, reads: list[tuple[int, int]]) -> None:
    reader = HashingReader(io.BytesIO(data), len(data))
    for offset, length in reads:
        reader.seek(offset)
        reader.read(length)
    assert reader.finish() == (len(data), hashlib.sha256(data).hexdigest())


def test_sequential_reading_hashes_everything_once() -> None:
    data = os.urandom(100_000)
    reader = HashingReader(io.BytesIO(data), len(data))
    while reader.read(4096):
        pass
    assert reader.finish()[1] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("builder", [mf.h264_mp4, mf.vp8_webm, mf.webm_without_duration, mf.rotated_mp4])
def test_probe_from_a_stream_equals_probe_from_a_path(builder: object, tmp_path: Path) -> None:
    path = builder(tmp_path)  # type: ignore[operator]
    from_path = probe_video(path, ProbeLimits())
    data = path.read_bytes()
    reader = HashingReader(io.BytesIO(data), len(data))
    assert probe_video(io.BufferedReader(reader), ProbeLimits()) == from_path
    assert reader.finish()[1] == hashlib.sha256(data).hexdigest()


def test_probe_from_a_stream_with_the_index_at_the_end(tmp_path: Path) -> None:
    """An MP4 without faststart makes the demuxer jump to the end first: the hash must still be whole."""
    path = tmp_path / "moov-at-end.mp4"
    with av.open(str(path), "w") as out:  # PyAV writes moov at the end unless told otherwise
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        rng = random.Random(3)
        for i in range(45):
            pixels = np.full((240, 320, 3), rng.randrange(256), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = path.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat"), "the fixture must have its index after the media data"
    reader = HashingReader(io.BytesIO(data), len(data))
    assert probe_video(io.BufferedReader(reader), ProbeLimits()).duration_s == pytest.approx(3.0, abs=0.1)
    assert reader.finish()[1] == hashlib.sha256(data).hexdigest()
