"""Validate an uploaded recording before anything is queued for it.

A bad upload is refused while the platform can still send it again, with a machine-readable code and a
message that says what to do. Accepting a file only to fail hours later in a worker costs a review.

Cost: one pass over the file's packets (demuxing, no decoding) gives the real duration, the frame rate and
the keyframe spacing, so a header that lies or is missing (browser MediaRecorder WebM has no duration
and no cues) does not matter. Only the first few frames and the last keyframe are decoded, which proves
the stream decodes at both ends. Memory holds one packet and the last keyframe's, whatever the file size.

What it cannot see: a WebM that declares no duration and was cut between frames looks like a shorter
recording (the upload's declared size and SHA-256 catch cuts in transit), and damaged picture data that
the decoder conceals (H.264 hides broken macroblocks) passes. Caught: bitstream errors in the first
frames or the last keyframe, a file that ends inside a frame, and in a file that declares its duration,
packets that stop more than half a second (or three frames) short of it.
"""

from __future__ import annotations

import io
import itertools
import logging
import statistics
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.error
from av.container import InputContainer
from av.packet import Packet
from av.stream import Disposition, Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from core.probes import VideoProbe

log = logging.getLogger(__name__)

# The demuxers whose files we accept, by FFmpeg's demuxer name. The upload API takes MP4, MOV, WebM and
# MKV; anything else FFmpeg can open (a JPEG as a one-frame "video", a .txt file as teletype art) is
# refused as not being a recording.
_ISO_BMFF = "mov,mp4,m4a,3gp,3g2,mj2"
_MATROSKA = "matroska,webm"
_ACCEPTED_DEMUXERS = frozenset({_ISO_BMFF, _MATROSKA})
_ACCEPTED_TEXT = "MP4, MOV, WebM or MKV"

# First frames decoded to prove the stream decodes. Eight packets get past the decoder delay that
# B-frames and slice threads add, and stay cheap.
_HEAD_PACKETS = 8

# Packets may end a little before the declared duration (rounding, an audio track's last frame);
# more than this, or more than three frames, means the file was cut short.
_TRUNCATION_SLACK_S = 0.5

_AV_TIME_BASE = 1_000_000


@dataclass(frozen=True)
class ProbeLimits:
    """What an upload must satisfy. Defaults cover webcam recordings from browsers and desktop apps."""

    min_side_px: int = 120
    max_side_px: int = 4096
    min_fps: float = 1.0
    max_fps: float = 120.0
    max_duration_s: float = 6 * 3600
    supported_codecs: frozenset[str] = frozenset({"h264", "hevc", "vp8", "vp9", "av1"})

    def __post_init__(self) -> None:
        if not 1 <= self.min_side_px <= self.max_side_px:
            raise ValueError(f"need 1 <= min_side_px <= max_side_px, got {self.min_side_px} and {self.max_side_px}")
        if not 0 < self.min_fps <= self.max_fps:
            raise ValueError(f"need 0 < min_fps <= max_fps, got {self.min_fps} and {self.max_fps}")
        if self.max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {self.max_duration_s}")
        if not self.supported_codecs:
            raise ValueError("supported_codecs is empty: no video could ever be accepted")


class MediaRejected(Exception):
    """An upload that cannot be accepted. `code` is for machines, `message` tells a person what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def probe_video(source: Path | BinaryIO, limits: ProbeLimits) -> VideoProbe:
    """Return the recording's properties, or raise `MediaRejected` saying why it cannot be accepted.

    `source` is a local path or a seekable binary file object (the upload service passes a reader over
    object storage, so nothing is copied to disk). Logs one line per call with the outcome. A path that
    does not exist raises `FileNotFoundError`: that is the caller's bug, not a bad upload.
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
        probe = _probe(source, size, limits)
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


@dataclass(frozen=True)
class _Scan:
    """What one pass over the packets found."""

    video_packets: int
    video_span_s: float  # first video timestamp to the end of the last video frame
    end_s: float | None  # end of the last packet of any stream, relative to the container start
    last_packet_corrupt: bool
    keyframe_interval_s: float | None
    first_frame: VideoFrame
    last_keyframe: Packet[Stream]
    last_keyframe_s: float


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
        width, height = stream.codec_context.width, stream.codec_context.height
        if min(width, height) < limits.min_side_px or max(width, height) > limits.max_side_px:
            raise MediaRejected(
                "unsupported_dimensions",
                f"the video is {width}x{height} pixels; each side must be {limits.min_side_px} to "
                f"{limits.max_side_px}: record at a standard webcam size such as 640x480 or 1280x720",
            )
        declared_s = None if container.duration is None else container.duration / _AV_TIME_BASE
        if declared_s is not None and declared_s > limits.max_duration_s:
            raise _too_long(declared_s, limits)
        scan = (_scan_index(container, stream, size, declared_s) if fmt == _ISO_BMFF else None) or _scan(
            container, stream
        )
        _check_complete(scan, declared_s)
        duration_s = scan.video_span_s
        if duration_s > limits.max_duration_s:
            raise _too_long(duration_s, limits)
        frame_rate = scan.video_packets / duration_s
        if not limits.min_fps <= frame_rate <= limits.max_fps:
            raise MediaRejected(
                "unsupported_frame_rate",
                f"the video averages {frame_rate:.2f} frames per second; it must be {limits.min_fps:g} to "
                f"{limits.max_fps:g}: record at a normal webcam rate (15 to 30 fps)",
            )
        _check_end_decodes(stream, scan)
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


def _too_long(duration_s: float, limits: ProbeLimits) -> MediaRejected:
    return MediaRejected(
        "duration_too_long",
        f"the recording lasts {duration_s / 3600:.2f} h; at most {limits.max_duration_s / 3600:.2f} h is "
        "accepted: split the exam into several sessions",
    )


def _scan_index(container: InputContainer, stream: VideoStream, size: int, declared_s: float | None) -> _Scan | None:
    """For MP4/MOV: the same facts from the sample index in the `moov` box, without reading the media data.

    The index gives every sample's timestamp, byte position and size, so a file cut short shows as a sample
    that lies past the end of the file. Only the first frames and the last keyframe are read and decoded.
    Returns None (scan every packet instead) when the index does not cover the file, as in fragmented MP4.
    """
    entries = [e for e in stream.index_entries if not e.is_discard]
    if len(entries) < 2 or declared_s is None:
        return None
    for other in container.streams:
        for entry in other.index_entries:
            if entry.pos + entry.size > size:
                raise MediaRejected(
                    "truncated_media",
                    f"the file's index lists media data up to byte {entry.pos + entry.size} but the file has "
                    f"{size} bytes: the upload was cut short; upload the complete file",
                )
    time_base = stream.time_base
    if time_base is None:
        return None
    stamps = sorted(e.timestamp for e in entries)
    frame = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    span_s = float((stamps[-1] - stamps[0] + frame) * time_base)
    if abs(span_s - declared_s) > max(_TRUNCATION_SLACK_S, 3 * span_s / len(stamps)):
        return None  # the index covers only part of the file (fragments): read every packet instead
    keyframes = sorted(e.timestamp for e in entries if e.is_keyframe)
    if not keyframes:
        return None
    gaps = [b - a for a, b in itertools.pairwise(keyframes) if b > a]
    head = _decode_head(container, stream)
    container.seek(keyframes[-1], stream=stream, backward=True, any_frame=False)
    last_keyframe: Packet[Stream] | None = next(  # type: ignore[assignment]  # a video packet is a packet
        (p for p in container.demux(stream) if p.size and p.is_keyframe), None
    )
    if last_keyframe is None:
        return None
    return _Scan(
        video_packets=len(entries),
        video_span_s=span_s,
        end_s=span_s,
        last_packet_corrupt=False,
        keyframe_interval_s=round(float(statistics.median(gaps) * time_base), 3) if gaps else None,
        first_frame=head[0],
        last_keyframe=last_keyframe,
        last_keyframe_s=float((keyframes[-1] - stamps[0]) * time_base),
    )


def _decode_head(container: InputContainer, stream: VideoStream) -> list[VideoFrame]:
    ctx = stream.codec_context
    head: list[VideoFrame] = []
    for count, packet in enumerate(itertools.islice(container.demux(stream), _HEAD_PACKETS), start=1):
        if packet.size:
            head += _decode(ctx, packet, "the first frames", count)  # type: ignore[arg-type]
    head += _drain(ctx)
    if not head:
        raise MediaRejected(
            "undecodable_media",
            f"the first {_HEAD_PACKETS} video packets decode to no picture: the recording is corrupt; record again",
        )
    return head


def _scan(container: InputContainer, stream: VideoStream) -> _Scan:
    """Read every packet once (no decoding) and decode the first few video frames on the way."""
    ctx = stream.codec_context
    count = 0
    time_base = Fraction(0)
    first_pts: int | None = None
    last_pts = 0
    last_duration = 0
    keyframes: list[int] = []
    last_keyframe: Packet[Stream] | None = None
    last_corrupt = False
    head: list[VideoFrame] = []
    end_s: float | None = None
    start_s = (container.start_time or 0) / _AV_TIME_BASE
    try:
        for packet in container.demux():
            if packet.size == 0:
                continue  # the end-of-stream marker PyAV yields per stream
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is not None:
                end = float((pts + (packet.duration or 0)) * packet.time_base) - start_s
                end_s = end if end_s is None else max(end_s, end)
            if packet.stream_index != stream.index:
                continue
            count += 1
            last_corrupt = packet.is_corrupt
            if pts is not None:
                time_base = packet.time_base
                first_pts = pts if first_pts is None else min(first_pts, pts)
                if pts >= last_pts:
                    last_pts, last_duration = pts, packet.duration or 0
                if packet.is_keyframe:
                    keyframes.append(pts)
                    last_keyframe = packet
            # A packet the file ends inside is left to the truncation check, which names the cause.
            if count <= _HEAD_PACKETS and not packet.is_corrupt:
                head += _decode(ctx, packet, "the first frames", count)
            if count == _HEAD_PACKETS:
                head += _drain(ctx)
    except av.error.FFmpegError as exc:
        stopped = "the start" if end_s is None else f"{end_s:.1f} s"
        raise MediaRejected(
            "truncated_media",
            f"reading the file failed after {stopped} ({exc.strerror}): the file is cut short or damaged; "
            "upload the complete recording",
        ) from None
    if count == 0:
        raise MediaRejected(
            "zero_duration",
            "the video stream holds no frames: the camera recorded nothing; check the camera and record again",
        )
    if first_pts is None or last_keyframe is None:
        raise MediaRejected(
            "undecodable_media",
            "the video has no timestamped keyframe, so no player can start or seek in it: record again",
        )
    if count < _HEAD_PACKETS:
        head += _drain(ctx)
    if not head:
        raise MediaRejected(
            "undecodable_media",
            f"the first {min(count, _HEAD_PACKETS)} video packets decode to no picture: the recording is "
            "corrupt; record again",
        )
    if last_duration == 0 and count > 1:
        # MediaRecorder WebM gives frames no duration: take the last frame as long as an average one.
        last_duration = round((last_pts - first_pts) / (count - 1))
    keyframes.sort()
    gaps = [b - a for a, b in itertools.pairwise(keyframes) if b > a]
    return _Scan(
        video_packets=count,
        video_span_s=float((last_pts + last_duration - first_pts) * time_base),
        end_s=end_s,
        last_packet_corrupt=last_corrupt,
        keyframe_interval_s=round(float(statistics.median(gaps) * time_base), 3) if gaps else None,
        first_frame=head[0],
        last_keyframe=last_keyframe,
        last_keyframe_s=float((keyframes[-1] - first_pts) * time_base),
    )


def _decode(ctx: VideoCodecContext, packet: Packet[Stream], where: str, index: int) -> list[VideoFrame]:
    try:
        return ctx.decode(packet)
    except av.error.FFmpegError as exc:
        raise MediaRejected(
            "undecodable_media",
            f"{where} do not decode (video packet {index}: {exc.strerror}): the recording is corrupt; "
            "record again, or upload the original file if this one was converted",
        ) from None


def _drain(ctx: VideoCodecContext) -> list[VideoFrame]:
    """Collect the frames the decoder still holds, then make it ready for unrelated packets."""
    try:
        frames = ctx.decode(None)
    except av.error.FFmpegError as exc:
        raise MediaRejected(
            "undecodable_media",
            f"the first frames do not decode ({exc.strerror}): the recording is corrupt; record again",
        ) from None
    ctx.flush_buffers()
    return frames


def _check_complete(scan: _Scan, declared_s: float | None) -> None:
    if scan.video_span_s <= 0:
        raise MediaRejected(
            "zero_duration",
            "the video lasts 0 s: the recorder stopped at once; record again",
        )
    if scan.last_packet_corrupt:
        raise MediaRejected(
            "truncated_media",
            f"the last video frame is incomplete (the file ends inside it, after {scan.video_span_s:.1f} s): "
            "the upload was cut short; upload the complete file",
        )
    if declared_s is None or scan.end_s is None:
        return  # no declared duration (live WebM): the packets are all there is to go by
    slack = max(_TRUNCATION_SLACK_S, 3 * scan.video_span_s / scan.video_packets)
    if scan.end_s < declared_s - slack:
        raise MediaRejected(
            "truncated_media",
            f"the packets stop at {scan.end_s:.1f} s but the file declares {declared_s:.1f} s: the upload "
            "was cut short; upload the complete file",
        )


def _check_end_decodes(stream: VideoStream, scan: _Scan) -> None:
    """Decode the last keyframe on its own: a keyframe needs no earlier frame, so this is cheap."""
    ctx = stream.codec_context
    where = f"the frames near the end (keyframe at {scan.last_keyframe_s:.1f} s)"
    frames = _decode(ctx, scan.last_keyframe, where, scan.video_packets)
    try:
        frames += ctx.decode(None)
    except av.error.FFmpegError as exc:
        raise MediaRejected(
            "undecodable_media",
            f"{where} do not decode ({exc.strerror}): the recording is corrupt; record again",
        ) from None
    if not frames:
        raise MediaRejected("undecodable_media", f"{where} decode to no picture: the recording is corrupt")


def _rotation(frame: VideoFrame, stream: Stream) -> int:
    """Clockwise display rotation, from the display matrix or else the legacy `rotate` tag.

    FFmpeg puts the container's display matrix on every decoded frame; PyAV reports it counter-clockwise,
    so a phone video tagged `rotate=90` reads as -90. Matroska tags come back upper-case (`ROTATE`).
    """
    if frame.rotation:
        return _quarter_turns(-frame.rotation)
    tags = {k.lower(): v for k, v in stream.metadata.items()}
    try:
        return _quarter_turns(float(tags.get("rotate", "0")))
    except ValueError:
        return 0


def _quarter_turns(degrees: float) -> int:
    return round(degrees / 90) * 90 % 360
