"""Sample exam recordings built from real photos that pip packages ship, for the demo, tests and benchmarks.

A fresh clone has no media and nothing may be downloaded, yet face detectors need real faces to be tested
honestly: synthetic blobs prove nothing. scikit-image ships a portrait of astronaut Eileen Collins (the
candidate) and a photographer in profile looking into a camera (a real turned head); matplotlib ships a
portrait of Grace Hopper (the second person). A coffee cup and a cat (a hard negative) give scenes
without a face. The candidate moves slightly (slow zoom, pan and hand-held jitter) so frames differ as in
a webcam recording. Each session comes with the ground truth of what is on screen, interval by interval.

Everything is deterministic for a seed. Needs the `demo` extra (scikit-image, matplotlib).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
import numpy.typing as npt

from ingest.event_log import EventType, ExamEvent

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

MIN_DURATION_S = 10.0
_Encoder = Literal["libx264", "libvpx"]
_CODECS: dict[str, tuple[str, _Encoder]] = {"h264": ("mp4", "libx264"), "vp8": ("webm", "libvpx")}


@dataclass(frozen=True)
class SampleInterval:
    """What the camera shows from `start_s` to `end_s`: how many faces, and whether the candidate looks away.

    `looking_away` is None where there is no candidate face to judge.
    """

    start_s: float
    end_s: float
    faces: int
    looking_away: bool | None
    what: str


@dataclass(frozen=True)
class SampleSession:
    """A recording, its event log, and the ground truth; `intervals` tile [0, duration_s)."""

    video_path: Path
    events_path: Path | None
    duration_s: float
    fps: int
    width: int
    height: int
    intervals: tuple[SampleInterval, ...]


@dataclass(frozen=True)
class _Shot:
    """Part of a photo placed in part of the frame: `focus` is the photo point at the centre of the view,
    `view_h` the photo height shown."""

    photo: str
    focus: tuple[float, float]
    view_h: float


@dataclass(frozen=True)
class _Scene:
    shots: tuple[_Shot, ...]  # side by side, left to right
    faces: int
    looking_away: bool | None
    what: str


_CANDIDATE = _Scene(
    (_Shot("astronaut", (225, 170), 340),),
    1,
    False,
    "candidate (Eileen Collins, skimage astronaut) facing the camera",
)
_SCRIPT: tuple[tuple[float, _Scene], ...] = (
    # (start as a fraction of the duration, scene); the timings are those of a 60 s session.
    (0 / 60, _CANDIDATE),
    (
        12 / 60,
        _Scene((_Shot("coffee", (300, 200), 400),), 0, None, "no face: a cup of coffee (skimage coffee)"),
    ),
    (14.5 / 60, _Scene((_Shot("chelsea", (225, 150), 300),), 0, None, "no face: a cat (skimage chelsea)")),
    (17 / 60, _CANDIDATE),
    (
        28 / 60,
        _Scene(
            (_Shot("astronaut", (225, 165), 330), _Shot("grace_hopper", (262, 260), 420)),
            2,
            False,
            "two faces: the candidate and Grace Hopper (matplotlib grace_hopper.jpg) side by side",
        ),
    ),
    (33 / 60, _CANDIDATE),
    (
        42 / 60,
        _Scene(
            (_Shot("camera", (235, 190), 300),),
            1,
            True,
            "head turned: a real face in profile, looking away into a camera (skimage camera); "
            "a different person from the candidate",
        ),
    ),
    (46 / 60, _CANDIDATE),
)


def build_sample_session(
    out_dir: Path,
    *,
    duration_s: float = 60.0,
    fps: int = 15,
    width: int = 640,
    height: int = 480,
    codec: str = "h264",
    seed: int = 0,
    with_events: bool = True,
) -> SampleSession:
    """Write `sample_session.mp4` (or `.webm` for vp8) and `sample_session_events.jsonl` into `out_dir`.

    The scripted timeline scales with `duration_s`; every boundary falls on a frame.
    """
    if codec not in _CODECS:
        raise ValueError(f"codec {codec!r} is not supported for samples; use one of {sorted(_CODECS)}")
    if duration_s < MIN_DURATION_S:
        raise ValueError(
            f"duration_s must be at least {MIN_DURATION_S} s so every scripted scene shows, got {duration_s}"
        )
    if not 1 <= fps <= 60:
        raise ValueError(f"fps must be 1 to 60, got {fps}")
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and at least 64, got {width}x{height}")
    n_frames = round(duration_s * fps)
    starts = [round(fraction * n_frames) for fraction, _ in _SCRIPT] + [n_frames]
    spans = list(zip(itertools.pairwise(starts), (scene for _, scene in _SCRIPT), strict=True))
    if any(b <= a for (a, b), _ in spans):
        raise ValueError(
            f"{duration_s} s at {fps} fps leaves a scripted scene without a frame: use more seconds or fps"
        )
    intervals = tuple(
        SampleInterval(a / fps, b / fps, scene.faces, scene.looking_away, scene.what) for (a, b), scene in spans
    )
    scenes = [scene for (a, b), scene in spans for _ in range(b - a)]
    out_dir.mkdir(parents=True, exist_ok=True)
    container, encoder = _CODECS[codec]
    video_path = out_dir / f"sample_session.{container}"
    _encode(video_path, encoder, _frames(scenes, width, height, fps, seed), width, height, fps)
    events_path = None
    if with_events:
        events_path = out_dir / "sample_session_events.jsonl"
        events_path.write_bytes(b"".join(e.to_json_line() for e in _events(intervals)))
    log.info(
        "sample session built",
        extra={
            "video": str(video_path),
            "duration_s": n_frames / fps,
            "fps": fps,
            "codec": codec,
            "seed": seed,
        },
    )
    return SampleSession(video_path, events_path, n_frames / fps, fps, width, height, intervals)


def write_filler_video(
    path: Path,
    size_bytes: int,
    *,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    bitrate_bps: int = 8_000_000,
    seed: int = 0,
) -> Path:
    """Write a valid H.264 MP4 of about `size_bytes` (within one frame), for upload and probe benchmarks.

    Two seconds of noise are encoded once at about `bitrate_bps` and their packets muxed again and again
    with later timestamps; each repeat starts on a keyframe, so the result decodes and probes like a real
    recording of roughly `size_bytes * 8 / bitrate_bps` seconds (noise runs some 20 % over the bitrate).
    500 MB take a few seconds at most; the time goes into writing the bytes.
    """
    if size_bytes < 100_000:
        raise ValueError(f"size_bytes must be at least 100000, got {size_bytes}")
    rng = np.random.default_rng(seed)
    clip_frames = 2 * fps
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream(
            "libx264",
            rate=fps,
            options={
                "preset": "ultrafast",
                "bf": "0",
                "g": str(clip_frames),
                "keyint_min": str(clip_frames),
                # A one-second VBV buffer holds noise to the asked bitrate; plain ABR overshoots by half.
                "maxrate": str(bitrate_bps),
                "bufsize": str(bitrate_bps),
            },
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate_bps
        clip: list[tuple[bytes, bool]] = []
        for i in range(clip_frames):
            frame = av.VideoFrame.from_ndarray(
                rng.integers(0, 256, (height * 3 // 2, width), dtype=np.uint8), format="yuv420p"
            )
            frame.pts = i
            clip += [(bytes(p), p.is_keyframe) for p in stream.encode(frame)]
        clip += [(bytes(p), p.is_keyframe) for p in stream.encode(None)]
        written = 0
        index = 0
        while written < size_bytes:
            data, keyframe = clip[index % len(clip)]
            if written + len(data) - size_bytes > size_bytes - written:
                break  # stopping here lands closer to the target than one more frame would
            packet = av.Packet(data)
            packet.stream = stream
            packet.time_base = Fraction(1, fps)
            packet.pts = packet.dts = index
            packet.duration = 1
            packet.is_keyframe = keyframe
            out.mux(packet)
            written += len(data)
            index += 1
    return path


def _frames(scenes: list[_Scene], width: int, height: int, fps: int, seed: int) -> Iterator[Image]:
    """Render one frame per entry of `scenes`, with the camera's slow drift and small hand-held jitter."""
    rng = np.random.default_rng(seed)
    n = len(scenes)
    t = np.arange(n) / fps
    phase = rng.uniform(0, 2 * math.pi, 3)
    kernel = np.ones(5) / 5
    jitter = np.stack([np.convolve(rng.normal(0, 1.2, n), kernel, mode="same") for _ in range(2)])
    zoom = 1.08 + 0.04 * np.sin(2 * math.pi * t / 17 + phase[0])
    dx = 0.012 * width * np.sin(2 * math.pi * t / 11 + phase[1]) + jitter[0]
    dy = 0.010 * height * np.sin(2 * math.pi * t / 13 + phase[2]) + jitter[1]
    photos = {name: _load_photo(name) for name in {shot.photo for scene in set(scenes) for shot in scene.shots}}
    for i, scene in enumerate(scenes):
        tile_w = width // len(scene.shots)  # width is even and a scene has one or two shots
        tiles = [_render(photos[s.photo], s, tile_w, height, zoom[i], dx[i], dy[i]) for s in scene.shots]
        yield tiles[0] if len(tiles) == 1 else np.ascontiguousarray(np.hstack(tiles))


def _render(photo: Image, shot: _Shot, width: int, height: int, zoom: float, dx: float, dy: float) -> Image:
    """One warp from photo to tile: scale so `view_h` photo pixels fill the height, centre on the focus."""
    scale = height / shot.view_h * zoom
    fx, fy = shot.focus
    matrix = np.array(
        [[scale, 0.0, width / 2 + dx - scale * fx], [0.0, scale, height / 2 + dy - scale * fy]],
        dtype=np.float64,
    )
    tile = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return np.asarray(tile, dtype=np.uint8)


def _load_photo(name: str) -> Image:
    """The photo as RGB, from the package that ships it."""
    import skimage.data  # the demo extra; imported here so `ingest` works without it

    if name == "grace_hopper":
        import matplotlib.cbook

        hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
        return np.asarray(cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    photo = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
    if photo.ndim == 2:  # the photographer is a greyscale photo; webcams deliver colour frames
        photo = np.ascontiguousarray(np.repeat(photo[:, :, None], 3, axis=2))
    return photo


def _encode(path: Path, encoder: _Encoder, frames: Iterator[Image], width: int, height: int, fps: int) -> None:
    # Keyframes every two seconds and none at scene changes, like browser and WebRTC encoders.
    # bitexact: the WebM muxer otherwise writes random segment and track UIDs, so no two files match.
    container_options = {"fflags": "+bitexact"}
    if encoder == "libx264":
        options = {"preset": "superfast", "crf": "23", "g": str(2 * fps), "sc_threshold": "0"}
        container_options["movflags"] = "+faststart"  # index first, as platforms that finish their files do
    else:
        # One thread: libvpx's VP8 threads spin-wait on each other, and on a busy machine that made
        # encoding ten times slower.
        options = {"deadline": "realtime", "cpu-used": "16", "threads": "1", "g": str(2 * fps), "b": "1M"}
    with av.open(str(path), "w", options=container_options) as out:
        stream = out.add_stream(encoder, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, image in enumerate(frames):
            # OpenCV's I420 conversion is BT.601 limited range, like FFmpeg's, and several times faster.
            frame = av.VideoFrame.from_ndarray(
                np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8), format="yuv420p"
            )
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _events(intervals: tuple[SampleInterval, ...]) -> list[ExamEvent]:
    """Browser events that fit the script: the window loses focus while the candidate is away or turned
    away, and something is pasted while a second person is in view."""
    events = [ExamEvent(EventType.FULLSCREEN_ENTER, 200, "exam started in fullscreen")]
    away = [iv for iv in intervals if iv.faces == 0]  # the coffee and the cat, one after the other
    events.append(ExamEvent(EventType.FOCUS_LOST, _ms(away[0].start_s + 0.3), "candidate left the desk"))
    events.append(ExamEvent(EventType.FOCUS_GAINED, _ms(away[-1].end_s + 0.5)))
    for iv in intervals:
        if iv.faces >= 2:
            events.append(ExamEvent(EventType.PASTE, _ms((iv.start_s + iv.end_s) / 2), "142 characters pasted"))
        if iv.looking_away:
            events.append(ExamEvent(EventType.FOCUS_LOST, _ms(iv.start_s + 0.2)))
            events.append(ExamEvent(EventType.FOCUS_GAINED, _ms(iv.end_s - 0.2)))
    return sorted(events, key=lambda e: e.t_ms)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
