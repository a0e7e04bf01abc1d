"""Cut a recording into time chunks and decode only the frames a chunk needs, at the sampling rate.

Chunks start on the keyframe grid the probe measured, so a worker seeking to its chunk decodes almost
nothing it will throw away. Within a chunk the decoder skips non-reference frames (nothing depends on
them, so they cost decoding time for no gain at 5 sampled fps out of 30), and keeps the first frame at or
after each sample time. It also skips the in-loop deblocking filter (H.264, VP8): about a fifth of the
decoding time on 640x480 H.264, for frames within ~47 dB PSNR of the filtered ones (measured on the
throughput benchmark's clip), far below what changes a face detection at 128-192 px. Frames come out of
a generator in batches, never as a whole video.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import cv2
import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Chunk:
    index: int
    start_ms: int
    end_ms: int


def plan_chunks(duration_ms: int, keyframe_interval_ms: int | None, target_ms: int = 30_000) -> list[Chunk]:
    """Chunks of about `target_ms` that tile [0, duration_ms), with inner boundaries on the keyframe grid."""
    if duration_ms <= 0:
        raise ValueError(f"a recording to chunk must last > 0 ms, got {duration_ms}")
    if target_ms <= 0:
        raise ValueError(f"target_ms must be > 0, got {target_ms}")
    step = target_ms
    if keyframe_interval_ms and keyframe_interval_ms > 0:
        step = max(1, round(target_ms / keyframe_interval_ms)) * keyframe_interval_ms
    count = max(1, math.ceil(duration_ms / step))
    bounds = [min(duration_ms, i * step) for i in range(count)] + [duration_ms]
    return [Chunk(i, bounds[i], bounds[i + 1]) for i in range(count) if bounds[i + 1] > bounds[i]]


class DecodeError(RuntimeError):
    """A chunk could not be decoded; the message names the chunk's time range and FFmpeg's reason.

    The recording is at fault, so the job fails without a retry (`pipelines.fanout.ChunkFailed`)."""


@dataclass(frozen=True)
class DecodeOptions:
    sample_fps: float = 5.0
    batch_size: int = 48
    """Frames per detector batch (9.6 s at 5 fps, ~44 MB at 640x480). Detectors keep no state across batches,
    so each batch's first frame runs every periodic pass (full-range, tiles, iris): larger batches waste fewer."""
    skip_nonref: bool = True
    skip_loop_filter: bool = True
    threads: int = 1
    max_side_px: int = 1280  # larger frames are scaled down in the decoder's own scaler

    def __post_init__(self) -> None:
        if not 0 < self.sample_fps <= 120:
            raise ValueError(f"sample_fps must be within (0, 120], got {self.sample_fps}")
        if self.batch_size < 1 or self.threads < 1 or self.max_side_px < 64:
            raise ValueError("batch_size and threads must be >= 1 and max_side_px >= 64")


def decode_chunk(
    source: str | Path | BinaryIO, chunk: Chunk, options: DecodeOptions
) -> Iterator[tuple[NDArray[np.uint8], NDArray[np.int64]]]:
    """Yield (frames (N, H, W, 3) RGB uint8, timestamps_ms (N,)) batches of sampled frames in the chunk.

    Timestamps are the frames' own presentation times (ms from the start of the recording), so a skipped
    non-reference frame shifts a sample by at most a frame or two, and the reported time stays true.
    Every decoded frame must have the stream's header size, the size the probe accepted: a recording whose
    resolution changes mid-stream raises `DecodeError` naming the time and both sizes.
    """
    interval = 1000.0 / options.sample_fps
    next_sample = float(chunk.start_ms)
    frames: NDArray[np.uint8] | None = None
    count = 0
    stamps: list[int] = []
    try:
        with av.open(str(source) if isinstance(source, Path) else source, "r") as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            ctx.thread_count = options.threads
            if options.skip_nonref:
                ctx.skip_frame = "NONREF"
            if options.skip_loop_filter:
                ctx.options = {"skip_loop_filter": "all"}
            start_offset = (container.start_time or 0) / 1_000_000
            accepted = (ctx.width, ctx.height)  # the header's: the decoder updates ctx's on a change of size
            width, height = _scaled(*accepted, options.max_side_px)
            scale = (width, height) != accepted
            if chunk.start_ms > 0:
                container.seek(
                    int((chunk.start_ms / 1000 + start_offset) / stream.time_base) if stream.time_base else 0,
                    stream=stream,
                    backward=True,
                    any_frame=False,
                )
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    continue
                t_ms = round((float(frame.pts * frame.time_base) - start_offset) * 1000)
                if (frame.width, frame.height) != accepted:
                    raise DecodeError(
                        f"at {t_ms / 1000:.3f} s the recording changes size from {accepted[0]}x{accepted[1]} (the "
                        f"size it was accepted at) to {frame.width}x{frame.height}: it cannot be analysed; re-encode "
                        f"it at one size (ffmpeg -i in -vf scale={accepted[0]}:{accepted[1]} out.mp4) and upload it"
                    )
                if t_ms >= chunk.end_ms:
                    break
                if t_ms < next_sample:  # before the chunk (the seek lands on an earlier keyframe) or between samples
                    continue
                if frames is None:  # each batch gets its own buffer: the consumer may keep the last one
                    frames = np.empty((options.batch_size, height, width, 3), np.uint8)
                to_rgb(frame, frames[count], scale)
                count += 1
                stamps.append(t_ms)
                next_sample = _next_sample_after(t_ms, chunk.start_ms, interval)
                if count == options.batch_size:
                    yield frames, np.array(stamps, dtype=np.int64)
                    frames, count, stamps = None, 0, []
    except av.error.FFmpegError as exc:
        raise DecodeError(
            f"decoding {chunk.start_ms / 1000:.1f}-{chunk.end_ms / 1000:.1f} s failed: {exc.strerror or exc}"
        ) from exc
    if frames is not None and count:
        yield frames[:count], np.array(stamps, dtype=np.int64)


BT601_COLORSPACES = frozenset({2, 5, 6})
"""FFmpeg's AVColorSpace values that mean BT.601 here: unspecified (what swscale assumes for it),
BT470BG and SMPTE170M."""
MPEG_RANGE = frozenset({0, 1})
"""AVColorRange unspecified or MPEG (limited, 16-235); 2 is JPEG (full) range."""


def to_rgb(frame: av.VideoFrame, out: NDArray[np.uint8], scale: bool) -> None:
    """Write ``frame`` as RGB into ``out`` (H, W, 3), scaled to ``out``'s size when ``scale``.

    Webcam recordings are limited-range BT.601 4:2:0, which OpenCV converts straight into ``out`` in
    ~0.1 ms at 640x480; PyAV's ``to_ndarray`` builds a new swscale context for every frame, ~0.5-1.5 ms
    measured, plus a copy into the batch. The two differ by a mean ~1 grey level (chroma
    interpolation). Anything else (scaling, full range, BT.709, other pixel formats) goes through swscale.
    """
    if (
        not scale
        and frame.format.name == "yuv420p"
        and frame.colorspace in BT601_COLORSPACES
        and frame.color_range in MPEG_RANGE
    ):
        cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420, dst=out)
        return
    height, width = out.shape[:2]
    # Without scaling, leave the size out: same pixels, and PyAV's path without a target size is ~2.5x faster.
    out[...] = (
        frame.to_ndarray(format="rgb24", width=width, height=height) if scale else frame.to_ndarray(format="rgb24")
    )


def _next_sample_after(t_ms: int, origin_ms: int, interval: float) -> float:
    """The first sample time on the chunk's grid strictly after `t_ms`."""
    k = math.floor((t_ms - origin_ms) / interval) + 1
    return origin_ms + k * interval


def _scaled(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
