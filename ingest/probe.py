"""Validate an uploaded recording before anything is queued for it.

A bad upload is refused while the platform can still send it again, with a machine-readable code and a
message that says what to do. Accepting a file only to fail hours later in a worker costs a review.

Cost: one pass over the file's packets (demuxing, no decoding) gives the real duration, the frame rate and
the keyframe spacing, so a header that lies or is missing (browser MediaRecorder WebM has no duration
and no cues) does not matter. Only the first few frames and the last keyframe are decoded, which proves
the stream decodes at both ends. Memory holds one packet and the last keyframe's, whatever the file size.

Isolation: `probe_video` runs all of this in a child process under memory, CPU and time limits
(`ingest.probe_process`), so a hostile file costs one refused upload (`probe_limits_exceeded`), never the API
process. Inside it, counts are checked as they stream: the video may hold no more frames than `max_fps` allows over
the longer of its declared duration and its timestamps so far (plus a second), nor more decoded pixels than the
budget, so a file that declares tens of millions of samples is refused after a few hundred. Only the keyframes'
timestamps are kept (8 bytes each, and their number is bounded by the same check).

What it cannot see: a WebM that declares no duration and was cut between frames looks like a shorter
recording (the upload's declared size and SHA-256 catch cuts in transit), and damaged picture data that
the decoder conceals (H.264 hides broken macroblocks) passes. Caught: bitstream errors in the first
frames or the last keyframe, a file that ends inside a frame, and in a file that declares its duration,
packets that stop more than half a second (or three frames) short of it.

This module opens the file, checks its container, stream and header, and runs it all in the sandboxed child. The
pass over the packets is `ingest.probe_scan`; the limits and the refusal (`ProbeLimits`, `MediaRejected`, defined in
`ingest.probe_rules`) are re-exported from here, where callers import them.
"""

from __future__ import annotations

import io
import logging
import math
import time
from pathlib import Path
from typing import BinaryIO

import av
import av.error
from av.container import InputContainer
from av.stream import Disposition, Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from core.probes import VideoProbe
from ingest.probe_process import (
    SandboxBroken,
    SandboxCrashed,
    SandboxExceeded,
    child_main,
    near_memory_limit,
    run_sandboxed,
)
from ingest.probe_rules import AV_TIME_BASE, MediaRejected, ProbeLimits, too_long, too_many_pixels
from ingest.probe_scan import (
    Counts,
    check_complete,
    check_declared_frames,
    check_end_decodes,
    scan_index,
    scan_packets,
)

__all__ = ["MediaRejected", "ProbeLimits", "inspect_video", "probe_video"]

log = logging.getLogger(__name__)

# The demuxers whose files we accept, by FFmpeg's demuxer name. The upload API takes MP4, MOV, WebM and
# MKV; anything else FFmpeg can open (a JPEG as a one-frame "video", a .txt file as teletype art) is
# refused as not being a recording.
_ISO_BMFF = "mov,mp4,m4a,3gp,3g2,mj2"
_MATROSKA = "matroska,webm"
_ACCEPTED_DEMUXERS = frozenset({_ISO_BMFF, _MATROSKA})
_ACCEPTED_TEXT = "MP4, MOV, WebM or MKV"


def probe_video(source: Path | BinaryIO, limits: ProbeLimits) -> VideoProbe:
    """Return the recording's properties, or raise `MediaRejected` saying why it cannot be accepted.

    `source` is a local path or a seekable binary file object (the upload service passes a reader over
    object storage, so nothing is copied to disk). FFmpeg runs in a child process under `limits.sandbox`; this
    process only serves it the stream's bytes, so an error the stream raises (storage failing) propagates
    unchanged. Logs one line per call with the outcome. A path that does not exist raises `FileNotFoundError`:
    that is the caller's bug, not a bad upload. `SandboxBroken` means the server, not the file, failed.
    """
    started = time.perf_counter()
    if isinstance(source, Path):
        size = source.stat().st_size
        where = str(source)
    else:
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        where = "<stream>"
    try:
        probe = _isolated(source, size, limits)
    except MediaRejected as rejected:
        log.info(
            "media probed",
            extra={
                "source": where,
                "size_bytes": size,
                "outcome": "rejected",
                "code": rejected.code,
                "reason": rejected.message,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        raise
    log.info(
        "media probed",
        extra={
            "source": where,
            "size_bytes": size,
            "outcome": "accepted",
            **probe.to_dict(),
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return probe


def inspect_video(source: Path | BinaryIO, limits: ProbeLimits) -> VideoProbe:
    """The probe's checks, in this process and without its limits: what the sandboxed child runs."""
    size = source.stat().st_size if isinstance(source, Path) else source.seek(0, io.SEEK_END)
    if not isinstance(source, Path):
        source.seek(0)
    return _probe(source, size, limits)


def _isolated(source: Path | BinaryIO, size: int, limits: ProbeLimits) -> VideoProbe:
    sandbox = limits.sandbox
    try:
        answer = run_sandboxed("ingest.probe", limits, source, size, sandbox)
    except SandboxExceeded as exceeded:
        what = {
            "memory": f"more than {sandbox.memory_bytes / 2**30:.2f} GiB of memory (PROCTOR_PROBE_MEMORY_BYTES)",
            "cpu": f"more than {sandbox.cpu_s} s of CPU (PROCTOR_PROBE_CPU_S)",
            "time": f"more than {sandbox.wall_s:g} s (PROCTOR_PROBE_TIMEOUT_S)",
        }[exceeded.limit]
        raise MediaRejected(
            "probe_limits_exceeded",
            f"checking the file took {what}, far beyond what a webcam recording needs: its index or structure is "
            "hostile or broken; upload the recording as the recorder wrote it, or re-encode it (for example "
            "`ffmpeg -i in -c:v libx264 out.mp4`)",
        ) from None
    except SandboxCrashed as crashed:
        raise MediaRejected(
            "undecodable_media",
            f"FFmpeg crashed ({crashed.signal_name}) reading the file: it is malformed; re-encode it or record again",
        ) from None
    if "rejected" in answer:
        code, message = answer["rejected"]
        raise MediaRejected(str(code), str(message))
    try:
        return VideoProbe.from_dict(answer["probe"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SandboxBroken(f"the probe process answered {str(answer)[:500]}: {exc}") from None


def _answer(source: Path | BinaryIO, limits: ProbeLimits) -> dict[str, object]:
    """The sandboxed child's handler: the probe, or the rejection, as JSON."""
    try:
        return {"probe": inspect_video(source, limits).to_dict()}
    except MediaRejected as rejected:
        if near_memory_limit(limits.sandbox):
            raise MemoryError(f"{rejected.code} at the memory limit: {rejected.message}") from None
        return {"rejected": [rejected.code, rejected.message]}


def _probe(source: Path | BinaryIO, size: int, limits: ProbeLimits) -> VideoProbe:
    if size == 0:
        raise MediaRejected("not_a_video", "the file is empty (0 bytes): upload the recording again")
    if isinstance(source, Path):
        with source.open("rb") as f:
            head = f.read(64)
        opened: str | BinaryIO = str(source)
    else:
        head = source.read(64)
        source.seek(0)
        opened = source
    try:
        # FFmpeg goes by content, the name only breaking ties; uploads sit in files with no video suffix.
        container = av.open(opened, mode="r", metadata_errors="replace")
    except MemoryError:
        raise  # FFmpeg's ENOMEM too: the sandbox's memory limit, not a bad file
    except av.error.FFmpegError as exc:
        raise _unopenable(head, exc) from None
    with container:
        fmt = container.format.name
        if fmt not in _ACCEPTED_DEMUXERS:
            raise MediaRejected(
                "not_a_video",
                f"the file was read as {container.format.long_name!r}, not a video recording: "
                f"upload the webcam recording as {_ACCEPTED_TEXT}",
            )
        name = _container_name(fmt, container, head)
        stream = _video_stream(container, name)
        codec = _check_codec(stream, limits)
        stream.codec_context.thread_count = 1  # a few frames are decoded: threads would only add memory
        width, height = stream.codec_context.width, stream.codec_context.height
        if min(width, height) < limits.min_side_px or max(width, height) > limits.max_side_px:
            raise MediaRejected(
                "unsupported_dimensions",
                f"the video is {width}x{height} pixels; each side must be {limits.min_side_px} to "
                f"{limits.max_side_px}: record at a standard webcam size such as 640x480 or 1280x720",
            )
        declared_s = None if container.duration is None else container.duration / AV_TIME_BASE
        if declared_s is not None and declared_s > limits.max_duration_s:
            raise too_long(declared_s, limits)
        check_declared_frames(stream, declared_s, limits)
        index = scan_index(container, stream, size, Counts(limits, declared_s, width, height))
        scan = index or scan_packets(container, stream, Counts(limits, declared_s, width, height))
        check_complete(scan, declared_s)
        duration_s = scan.video_span_s
        if duration_s > limits.max_duration_s:
            raise too_long(duration_s, limits)
        frame_rate = scan.video_packets / duration_s
        if not limits.min_fps <= frame_rate <= limits.max_fps:
            raise MediaRejected(
                "unsupported_frame_rate",
                f"the video averages {frame_rate:.2f} frames per second; it must be {limits.min_fps:g} to "
                f"{limits.max_fps:g}: record at a normal webcam rate (15 to 30 fps)",
            )
        if duration_s * frame_rate * width * height > limits.max_pixels:
            raise too_many_pixels(scan.video_packets, width, height, limits)
        check_end_decodes(stream, scan, (width, height))
        return VideoProbe(
            container=name,
            codec=codec,
            duration_s=round(duration_s, 3),
            frame_rate=round(frame_rate, 3),
            width=width,
            height=height,
            rotation_deg=_rotation(scan.first_frame, stream),
            has_audio=bool(container.streams.audio),
            keyframe_interval_s=scan.keyframe_interval_s,
        )


def _unopenable(head: bytes, exc: av.error.FFmpegError) -> MediaRejected:
    """Tell a damaged recording from something that never was one, by its first bytes."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return MediaRejected(
            "truncated_media",
            "the file starts like an MP4/MOV but its index (the moov box) is missing or unreadable: the "
            "upload was cut short or the recorder never finished writing the file; upload the complete "
            "file, or record with the index at the front (faststart)",
        )
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return MediaRejected(
            "truncated_media",
            f"the file starts like a WebM/MKV but ends or breaks before its first frame ({exc.strerror}): "
            "upload the complete recording",
        )
    return MediaRejected(
        "not_a_video",
        f"no video container was recognised in the file's content: upload the recording as {_ACCEPTED_TEXT}",
    )


def _container_name(fmt: str, container: InputContainer, head: bytes) -> str:
    """The short name people use: FFmpeg reports one demuxer for each family of formats."""
    if fmt == _MATROSKA:
        # The EBML header's DocType, within the first few dozen bytes, says which of the two it is.
        return "webm" if b"webm" in head else "mkv"
    brand = container.metadata.get("major_brand", "").strip().lower()
    if brand == "qt":
        return "mov"
    if brand == "m4a":
        return "m4a"
    return "3gp" if brand.startswith("3g") else "mp4"


def _video_stream(container: InputContainer, name: str) -> VideoStream:
    # Cover art in MP4 shows up as a one-frame video stream; it is not the recording.
    videos = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not videos:
        found = ", ".join(s.type for s in container.streams) or "none"
        raise MediaRejected(
            "no_video_stream",
            f"the {name} file has no video stream (streams found: {found}): upload the webcam video, "
            "not an audio-only recording",
        )
    return videos[0]


def _check_codec(stream: VideoStream, limits: ProbeLimits) -> str:
    accepted = ", ".join(sorted(limits.supported_codecs))
    # PyAV leaves codec_context as None when this FFmpeg build has no decoder for the stream.
    if stream.codec_context is None:
        raise MediaRejected(
            "unsupported_codec",
            f"the video codec cannot be decoded by this server's FFmpeg build; re-encode to one of: {accepted}",
        )
    # The canonical name, not the decoder's: AV1 is decoded by "libdav1d" but is codec "av1".
    codec = stream.codec_context.codec.canonical_name
    if codec not in limits.supported_codecs:
        raise MediaRejected(
            "unsupported_codec",
            f"the video codec is {codec!r}; accepted: {accepted}: re-encode, e.g. to H.264 in MP4 or VP8 in WebM",
        )
    return codec


def _rotation(frame: VideoFrame, stream: Stream) -> int:
    """Clockwise display rotation, from the display matrix or else the legacy `rotate` tag.

    FFmpeg puts the container's display matrix on every decoded frame; PyAV reports it counter-clockwise,
    so a phone video tagged `rotate=90` reads as -90. Matroska tags come back upper-case (`ROTATE`).
    The rule for a rotation that is not a finite number of degrees (`rotate=inf`, NaN, text, a degenerate
    matrix): it is ignored, as players ignore it, and the video is taken as stored (0). Rotation only turns
    the picture for display; refusing a whole exam for a broken tag would cost more than it protects.
    """
    if frame.rotation and math.isfinite(frame.rotation):
        return _quarter_turns(-frame.rotation)
    tag = {k.lower(): v for k, v in stream.metadata.items()}.get("rotate", "0")
    try:
        degrees = float(tag)
    except ValueError:
        degrees = math.nan
    if math.isfinite(degrees):
        return _quarter_turns(degrees)
    log.warning("rotation ignored", extra={"rotate_tag": tag[:40], "matrix_rotation": str(frame.rotation)})
    return 0


def _quarter_turns(degrees: float) -> int:
    return round(degrees / 90) * 90 % 360


if __name__ == "__main__":  # the sandboxed child that `probe_video` starts
    child_main(_answer)
