"""Hostile media: index and keyframe bombs, compute bombs, broken rotation tags, sizes that change mid-stream.

Every hostile file is built here, from a small real recording: the MP4 bombs by rewriting the sample tables in
the `moov` box (a constant sample size lets a few bytes declare millions of samples), the WebM bomb by muxing
thousands of one-byte keyframes. Each row says what the probe must answer; the memory tests check that the
calling (API) process stays small whatever the child process is made to do.
"""

from __future__ import annotations

import io
import re
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from av.video.stream import VideoStream

from ingest.probe import MediaRejected, ProbeLimits, probe_video
from ingest.probe_process import Sandbox
from pipelines.decode import Chunk, DecodeError, DecodeOptions, decode_chunk
from tests.support import media as mf
from tests.support.platform import Api, declare, problem, session_body

LIMITS = ProbeLimits()
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
_STBL = (b"moov", b"trak", b"mdia", b"minf", b"stbl")

# -- builders -------------------------------------------------------------------------------------------------

Box = tuple[bytes, "bytes | list[Box]"]


def _parse(data: bytes) -> list[Box]:
    boxes: list[Box] = []
    at = 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + size]
        boxes.append((kind, _parse(body) if kind in _CONTAINERS else body))
        at += size
    return boxes


def _serialise(boxes: list[Box]) -> bytes:
    out = b""
    for kind, body in boxes:
        payload = body if isinstance(body, bytes) else _serialise(body)
        out += struct.pack(">I4s", 8 + len(payload), kind) + payload
    return out


def _edit(boxes: list[Box], path: tuple[bytes, ...], change: Callable[[bytes], bytes]) -> list[Box]:
    edited: list[Box] = []
    for kind, body in boxes:
        if kind == path[0]:
            if len(path) == 1:
                assert isinstance(body, bytes)
                body = change(body)
            else:
                assert isinstance(body, list)
                body = _edit(body, path[1:], change)
        edited.append((kind, body))
    return edited


def _replaced_by(table: bytes) -> Callable[[bytes], bytes]:
    return lambda _: table


def _u32(offset: int, value: int) -> Callable[[bytes], bytes]:
    def change(body: bytes) -> bytes:
        return body[:offset] + struct.pack(">I", value) + body[offset + 4 :]

    return change


def _declare_samples(
    path: Path, out: Path, samples: int, tick: int, chunks: int = 1, *, all_keyframes: bool = False
) -> Path:
    """Rewrite a one-track MP4 (index at the end) so its index declares `samples` frames of one byte, `tick`
    media-time units apart, in `chunks` chunks that all start at the first frame: a few bytes of `moov` for an
    index of millions of entries, every one of them inside the file. Durations in the headers follow. The
    first frame is the only keyframe, or (`all_keyframes`: no sync-sample table) every frame is one."""
    boxes = _parse(path.read_bytes())
    assert [k for k, _ in boxes][-1] == b"moov", "the index must come last, so that it can grow"
    stco = _find(boxes, (*_STBL, b"stco"))
    first_chunk = struct.unpack(">I", stco[8:12])[0]
    media_scale = struct.unpack(">I", _find(boxes, (b"moov", b"trak", b"mdia", b"mdhd"))[12:16])[0]
    movie_scale = struct.unpack(">I", _find(boxes, (b"moov", b"mvhd"))[12:16])[0]
    media_ticks = samples * tick
    movie_ticks = media_ticks * movie_scale // media_scale
    tables = {
        b"stsz": struct.pack(">4xII", 1, samples),  # constant size: no per-sample table at all
        b"stts": struct.pack(">4xIII", 1, samples, tick),
        b"stsc": struct.pack(">4xIIII", 1, 1, -(-samples // chunks), 1),
        b"stco": struct.pack(">4xI", chunks) + struct.pack(">I", first_chunk) * chunks,
        b"stss": struct.pack(">4xII", 1, 1),
    }
    if all_keyframes:
        del tables[b"stss"]
        boxes = _without(boxes, b"stss")
    for kind, table in tables.items():
        boxes = _edit(boxes, (*_STBL, kind), _replaced_by(table))
    boxes = _without(boxes, b"edts")  # its edit list would clip the declared duration to the base file's
    boxes = _edit(boxes, (b"moov", b"mvhd"), _u32(16, movie_ticks))
    boxes = _edit(boxes, (b"moov", b"trak", b"tkhd"), _u32(20, movie_ticks))
    boxes = _edit(boxes, (b"moov", b"trak", b"mdia", b"mdhd"), _u32(16, media_ticks))
    out.write_bytes(_serialise(boxes))
    return out


def _without(boxes: list[Box], kind: bytes) -> list[Box]:
    return [(k, b if isinstance(b, bytes) else _without(b, kind)) for k, b in boxes if k != kind]


def _find(boxes: list[Box], path: tuple[bytes, ...]) -> bytes:
    for kind, body in boxes:
        if kind == path[0]:
            if len(path) == 1:
                assert isinstance(body, bytes)
                return body
            assert isinstance(body, list)
            return _find(body, path[1:])
    raise KeyError(path)


def mp4_index_bomb(samples: int, *, all_keyframes: bool = False) -> mf.Builder:
    """A 2 s recording whose index declares `samples` frames within those 2 s (FFmpeg builds the whole index
    when it opens the file: ~70 bytes a sample; beyond ~25 M samples it quietly drops it)."""

    def build(d: Path) -> Path:
        base = mf.write_video(d / "base.mp4")
        out = d / f"index_bomb_{samples}.mp4"
        return _declare_samples(base, out, samples, tick=1, all_keyframes=all_keyframes)

    return build


def six_hours_4096_at_120_fps(d: Path) -> Path:
    """The compute bomb: an index of 2.59 M one-byte frames 1/120 s apart (5 h 59 min) of 4096x4096 pixels,
    in a 40 kB file. Each count is within its own limit; their product is 4.3e13 pixels to decode."""
    base = mf.write_video(d / "base_4k.mp4", size=(4096, 4096), frames=2, gop=2)
    return _declare_samples(base, d / "compute_bomb.mp4", 2_590_000, tick=mf.FPS * 1024 // 120, chunks=100)


def webm_packet_bomb(d: Path) -> Path:
    """A real VP8 recording's first frames, then 20,000 one-byte frames a millisecond apart."""
    source = mf.vp8_webm(d)
    path = d / "keyframe_bomb.webm"
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx", rate=mf.FPS)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height = 160, 120
        time_base = Fraction(1, 1000)
        for i, packet in enumerate(p for p in src.demux(video=0) if p.size):
            if i == 10:
                break
            copy = av.Packet(bytes(packet))
            copy.stream, copy.time_base = stream, time_base
            copy.pts = copy.dts = i * 66
            copy.is_keyframe = packet.is_keyframe
            out.mux(copy)
        for i in range(20_000):
            tiny = av.Packet(b"\x00")
            tiny.stream, tiny.time_base = stream, time_base
            tiny.pts = tiny.dts = 700 + i
            tiny.is_keyframe = True
            out.mux(tiny)
    return path


def rotate_tag(value: str) -> mf.Builder:
    def build(d: Path) -> Path:
        return mf.write_video(d / "rotate_tag.mkv", tags={"rotate": value})

    return build


def size_changes(sizes: tuple[tuple[int, int], ...], frames: int = 15) -> mf.Builder:
    """VP8 in WebM at each of `sizes` in turn (`frames` frames each, each part starting on a keyframe): the
    stream's header says the first size; VP8 keyframes carry their own."""

    def build(d: Path) -> Path:
        path = d / f"sizes_{len(sizes)}.webm"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libvpx", rate=mf.FPS)
            assert isinstance(stream, VideoStream)
            stream.width, stream.height = sizes[0]
            for part, (width, height) in enumerate(sizes):
                encoder = av.CodecContext.create("libvpx", "w")
                encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
                encoder.time_base = Fraction(1, mf.FPS)
                encoder.options = {"threads": "1"}
                for i in range(frames + 1):
                    image = np.full((height, width, 3), (40 * i + 60 * part) % 256, np.uint8)
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24") if i < frames else None
                    if frame is not None:
                        frame.pts = i
                    for packet in encoder.encode(frame):
                        packet.stream = stream
                        packet.pts = packet.dts = (packet.pts or 0) + part * frames
                        packet.time_base = Fraction(1, mf.FPS)
                        out.mux(packet)
        return path

    return build


def big_frames(d: Path) -> Path:
    return mf.write_video(d / "big.mp4", size=(4096, 4096), frames=8, gop=8)


# -- the table ------------------------------------------------------------------------------------------------

# (case, builder, limits, expected): a rejection code, or the fields the probe must report.
CASES: list[tuple[str, mf.Builder, ProbeLimits, str | dict[str, object]]] = [
    ("mp4 index of 10 M samples in 2 s", mp4_index_bomb(10_000_000), LIMITS, "unsupported_frame_rate"),
    ("mp4 index of 40 M samples (FFmpeg drops it)", mp4_index_bomb(40_000_000), LIMITS, "unsupported_frame_rate"),
    (
        "mp4 index of 10 M keyframes",
        mp4_index_bomb(10_000_000, all_keyframes=True),
        LIMITS,
        "unsupported_frame_rate",
    ),
    ("webm with 20,000 frames at 1000 fps", webm_packet_bomb, LIMITS, "unsupported_frame_rate"),
    ("6 h x 120 fps x 4096x4096", six_hours_4096_at_120_fps, LIMITS, "pixel_budget_exceeded"),
    ("over a small pixel budget", mf.h264_mp4, replace(LIMITS, max_pixels=160 * 120 * 29), "pixel_budget_exceeded"),
    ("within the pixel budget", mf.h264_mp4, replace(LIMITS, max_pixels=160 * 120 * 30), {"width": 160}),
    (
        "memory: 4096x4096 frames in 256 MiB",
        big_frames,
        replace(LIMITS, sandbox=Sandbox(memory_bytes=256 * 1024 * 1024)),
        "probe_limits_exceeded",
    ),
    (
        "cpu: a 2.59 M-entry index in 1 s of CPU",
        six_hours_4096_at_120_fps,
        replace(LIMITS, max_pixels=10**15, sandbox=Sandbox(cpu_s=1)),
        "probe_limits_exceeded",
    ),
    ("time: any file in 10 ms", mf.h264_mp4, replace(LIMITS, sandbox=Sandbox(wall_s=0.01)), "probe_limits_exceeded"),
    ("rotate=inf", rotate_tag("inf"), LIMITS, {"rotation_deg": 0}),
    ("rotate=-inf", rotate_tag("-inf"), LIMITS, {"rotation_deg": 0}),
    ("rotate=nan", rotate_tag("nan"), LIMITS, {"rotation_deg": 0}),
    ("rotate=sideways", rotate_tag("sideways"), LIMITS, {"rotation_deg": 0}),
    ("rotate=1e308", rotate_tag("1e308"), LIMITS, {"width": 160}),
    ("rotate=90.4", rotate_tag("90.4"), LIMITS, {"rotation_deg": 90}),
    ("larger from the middle to the end", size_changes(((160, 120), (320, 240))), LIMITS, "resolution_changes"),
    ("larger in the middle only", size_changes(((160, 120), (320, 240), (160, 120))), LIMITS, {"width": 160}),
]


@pytest.mark.parametrize(("builder", "limits", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_media_table(
    tmp_path: Path, builder: mf.Builder, limits: ProbeLimits, expected: str | dict[str, object]
) -> None:
    path = builder(tmp_path)
    assert path.stat().st_size < 1_000_000, "a hostile file is small: its cost is in what it declares"
    source = io.BufferedReader(io.FileIO(path))  # a stream, as the upload service passes it
    if isinstance(expected, str):
        with pytest.raises(MediaRejected) as caught:
            probe_video(source, limits)
        assert caught.value.code == expected, caught.value.message
        assert "PROCTOR_" in caught.value.message or expected != "probe_limits_exceeded"
        return
    probe = probe_video(source, limits)
    assert {k: probe.to_dict()[k] for k in expected} == expected


# -- bounded memory in the calling process --------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.parametrize(
    "builder",
    [mp4_index_bomb(10_000_000), mp4_index_bomb(10_000_000, all_keyframes=True), webm_packet_bomb],
    ids=["mp4 index bomb", "mp4 keyframe bomb", "webm packet bomb"],
)
def test_bombs_leave_the_calling_process_small(tmp_path: Path, builder: mf.Builder) -> None:
    """The API process serves the child's reads and nothing else: a few MB of Python objects, no growth in RSS,
    where probing in-process held FFmpeg's 700 MB index and a Python object per entry."""
    path = builder(tmp_path)
    peak_rss, sampling = _rss_bytes(), threading.Event()

    def sample() -> None:
        nonlocal peak_rss
        while not sampling.is_set():
            peak_rss = max(peak_rss, _rss_bytes())
            time.sleep(0.002)

    before = _rss_bytes()
    sampler = threading.Thread(target=sample)
    tracemalloc.start()
    sampler.start()
    try:
        with pytest.raises(MediaRejected) as caught:
            probe_video(io.BufferedReader(io.FileIO(path)), LIMITS)
        _, peak_python = tracemalloc.get_traced_memory()
    finally:
        sampling.set()
        sampler.join()
        tracemalloc.stop()
    assert caught.value.code == "unsupported_frame_rate"
    assert peak_python < 8 * 1024 * 1024, f"{peak_python / 2**20:.1f} MiB of Python objects"
    assert peak_rss - before < 64 * 1024 * 1024, f"RSS grew by {(peak_rss - before) / 2**20:.1f} MiB"


def test_a_packet_bomb_is_refused_while_streaming(tmp_path: Path) -> None:
    """Refused once the frames counted so far pass what 120 fps allows over the declared 20.8 s, not after
    reading all 20,010 of them."""
    with pytest.raises(MediaRejected) as caught:
        probe_video(webm_packet_bomb(tmp_path), LIMITS)
    assert caught.value.code == "unsupported_frame_rate"
    counted = re.search(r"holds more than (\d+) video frames within", caught.value.message)
    assert counted is not None, caught.value.message
    assert int(counted[1]) <= 120 * (20.8 + 1)


# -- a size change that only the decoder sees -----------------------------------------------------------------


def test_a_size_change_mid_stream_fails_decoding_for_good(tmp_path: Path) -> None:
    """The probe accepts it (first frames and last keyframe are 160x120); the decoder names the time and both
    sizes in a `DecodeError`, which fails the job without a retry (pipelines.worker)."""
    path = size_changes(((160, 120), (320, 240), (160, 120)))(tmp_path)
    probe = probe_video(path, LIMITS)
    assert (probe.width, probe.height) == (160, 120)
    chunk = Chunk(0, 0, round(probe.duration_s * 1000))
    with pytest.raises(DecodeError, match=r"at 1\.000 s .* from 160x120 .* to 320x240"):
        for _ in decode_chunk(path, chunk, DecodeOptions(sample_fps=15)):
            pass


def test_frames_of_the_accepted_size_decode(tmp_path: Path) -> None:
    path = mf.vp8_webm(tmp_path)
    batches = list(decode_chunk(path, Chunk(0, 0, 2000), DecodeOptions(sample_fps=5)))
    assert sum(len(stamps) for _, stamps in batches) == 10
    assert batches[0][0].shape[1:] == (120, 160, 3)


# -- through the real endpoint --------------------------------------------------------------------------------


def test_rotate_inf_is_accepted_as_unrotated_through_complete(api: Api, tmp_path: Path) -> None:
    """`complete` answered 500 (an OverflowError in the rotation) for a `rotate=inf` tag."""
    path = rotate_tag("inf")(tmp_path)
    _, key = api.tenant()
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        created = http.post("/v1/sessions", json=session_body(declare("webcam", path, "video/x-matroska")))
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert http.put(f"/v1/sessions/{sid}/media/webcam/parts/1", content=path.read_bytes()).status_code == 200
        completed = http.post(f"/v1/sessions/{sid}/media/webcam/complete")
        assert problem(completed) == (200, "ok")
        webcam = next(m for m in completed.json()["media"] if m["kind"] == "webcam")
        assert webcam["probe"]["rotation_deg"] == 0


def test_a_probe_bomb_through_complete_is_a_422_and_the_session_is_rejected(api: Api, tmp_path: Path) -> None:
    path = mp4_index_bomb(10_000_000)(tmp_path)
    _, key = api.tenant()
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        sid = http.post("/v1/sessions", json=session_body(declare("webcam", path))).json()["id"]
        assert http.put(f"/v1/sessions/{sid}/media/webcam/parts/1", content=path.read_bytes()).status_code == 200
        assert problem(http.post(f"/v1/sessions/{sid}/media/webcam/complete")) == (422, "unsupported_frame_rate")
        assert http.get(f"/v1/sessions/{sid}").json()["state"] == "rejected"
