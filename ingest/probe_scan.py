"""The probe's pass over a recording's packets (`ingest.probe` opens the file and checks its header first).

For MP4/MOV the sample index gives every frame's timestamp, position and size without reading the media data
(`scan_index`); otherwise every packet is demuxed once, without decoding (`scan_packets`). Either way the video
frames are counted against the limits as they stream (`Counts`), only the keyframes' timestamps are kept, and only
the first few frames and the last keyframe are decoded: `check_complete` and `check_end_decodes` then refuse a
file that was cut short or does not decode at its ends.
"""

from __future__ import annotations

import itertools
from array import array
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.index import IndexEntry
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from core.media_runs import RESTART_BACK_S, RunJoiner
from ingest.probe_rules import AV_TIME_BASE, MediaRejected, ProbeLimits, too_long, too_many_pixels

# First frames decoded to prove the stream decodes. Eight packets get past the decoder delay that
# B-frames and slice threads add, and stay cheap.
_HEAD_PACKETS = 8

# Packets may end a little before the declared duration (rounding, an audio track's last frame);
# more than this, or more than three frames, means the file was cut short.
_TRUNCATION_SLACK_S = 0.5

# While the packets stream, the frames counted so far may exceed `max_fps` times their span by this much time's
# worth: the span of n frames is n - 1 frame durations, and timestamps jitter.
_COUNT_GRACE_S = 1.0


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


def check_declared_frames(stream: VideoStream, declared_s: float | None, limits: ProbeLimits) -> None:
    """The first count there is: the frames the header declares (an MP4's sample table). When FFmpeg cannot hold
    the index of a file that declares tens of millions of samples, it drops the index without an error, so the
    declaration is the only trace of the lie."""
    allowed_s = (limits.max_duration_s if declared_s is None else declared_s) + _COUNT_GRACE_S
    if stream.frames > limits.max_fps * allowed_s:
        raise MediaRejected(
            "unsupported_frame_rate",
            f"the file declares {stream.frames} video frames in {allowed_s - _COUNT_GRACE_S:.1f} s, over "
            f"{limits.max_fps:g} frames per second: its index is broken or forged; record again at a normal "
            "webcam rate (15 to 30 fps)",
        )


class Counts:
    """The video frames counted so far, refused as soon as they pass what the limits allow.

    Frames may number at most `max_fps` times the longer of the declared duration and the span of their
    timestamps so far, plus `_COUNT_GRACE_S`; their pixels at most the budget; their span at most the longest
    recording. So a file cannot make the probe count (or keep keyframe times for) more frames than a valid
    recording of the longest accepted duration has.
    """

    def __init__(self, limits: ProbeLimits, declared_s: float | None, width: int, height: int) -> None:
        self.limits, self.declared_s, self.width, self.height = limits, declared_s, width, height
        self.frames = 0

    def add(self, span_s: float) -> None:
        """Count one more frame; `span_s` is the span of the frames' timestamps so far."""
        self.frames += 1
        limits = self.limits
        allowed_s = max(span_s, self.declared_s or 0.0) + _COUNT_GRACE_S
        if self.frames > limits.max_fps * allowed_s:
            declared = "" if self.declared_s is None else f" (the file declares {self.declared_s:.1f} s)"
            raise MediaRejected(
                "unsupported_frame_rate",
                f"the file holds more than {self.frames - 1} video frames within {span_s:.1f} s{declared}, over "
                f"{limits.max_fps:g} frames per second: its index or timestamps are broken or forged; record "
                "again at a normal webcam rate (15 to 30 fps)",
            )
        if span_s > limits.max_duration_s:
            raise too_long(span_s, limits)
        if self.frames * self.width * self.height > limits.max_pixels:
            raise too_many_pixels(self.frames, self.width, self.height, limits)


def _keyframe_interval_s(keyframes: array[int], time_base: Fraction) -> float | None:
    """The median spacing of the keyframes' timestamps (in `time_base` units), None with fewer than two."""
    stamps = np.sort(np.frombuffer(keyframes, dtype=np.int64))
    gaps = np.diff(stamps)
    gaps = gaps[gaps > 0]
    return round(float(np.median(gaps)) * float(time_base), 3) if gaps.size else None


def _within_file(entry: IndexEntry, size: int) -> None:
    if entry.pos + entry.size > size:
        raise MediaRejected(
            "truncated_media",
            f"the file's index lists media data up to byte {entry.pos + entry.size} but the file has "
            f"{size} bytes: the upload was cut short; upload the complete file",
        )


def scan_index(container: InputContainer, stream: VideoStream, size: int, counts: Counts) -> _Scan | None:
    """For MP4/MOV: the same facts from the sample index in the `moov` box, without reading the media data.

    The index gives every sample's timestamp, byte position and size, so a file cut short shows as a sample
    that lies past the end of the file. Only the first frames and the last keyframe are read and decoded.
    Returns None (scan every packet instead) when the index does not cover the file, as in fragmented MP4.
    The entries are read one at a time and counted against the limits as they go.
    """
    time_base = stream.time_base
    declared_s = counts.declared_s
    if len(stream.index_entries) < 2 or declared_s is None or time_base is None:
        return None
    first: int | None = None
    last = 0
    keyframes = array("q")
    for entry in stream.index_entries:
        _within_file(entry, size)
        if entry.is_discard:
            continue
        stamp = entry.timestamp
        first, last = (stamp, stamp) if first is None else (min(first, stamp), max(last, stamp))
        if entry.is_keyframe:
            keyframes.append(stamp)
        counts.add(float((last - first) * time_base))
    for other in container.streams:
        if other.index != stream.index:
            for entry in other.index_entries:
                _within_file(entry, size)
    count = counts.frames
    if first is None or count < 2 or not keyframes:
        return None
    frame = (last - first) / (count - 1)
    span_s = float((last - first + frame) * time_base)
    if abs(span_s - declared_s) > max(_TRUNCATION_SLACK_S, 3 * span_s / count):
        return None  # the index covers only part of the file (fragments): read every packet instead
    head = _decode_head(container, stream)
    last_keyframe_pts = max(keyframes)
    try:
        container.seek(last_keyframe_pts, stream=stream, backward=True, any_frame=False)
        last_keyframe: Packet[Stream] | None = next(  # type: ignore[assignment]  # a video packet is a packet
            (p for p in container.demux(stream) if p.size and p.is_keyframe), None
        )
    except MemoryError:
        raise
    except av.error.FFmpegError as exc:
        raise MediaRejected(
            "truncated_media",
            f"reading the last keyframe failed ({exc.strerror}): the file is cut short or damaged; upload the "
            "complete recording",
        ) from None
    if last_keyframe is None:
        return None
    return _Scan(
        video_packets=count,
        video_span_s=span_s,
        end_s=span_s,
        last_packet_corrupt=False,
        keyframe_interval_s=_keyframe_interval_s(keyframes, time_base),
        first_frame=head[0],
        last_keyframe=last_keyframe,
        last_keyframe_s=float((last_keyframe_pts - first) * time_base),
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


def _run_joiner(container: InputContainer, stream: VideoStream) -> RunJoiner | None:
    """A live-written WebM (a browser's MediaRecorder: no duration in its header) may hold several recorder runs
    whose timestamps restart (`core.media_runs`): they are measured as one timeline. None for other files."""
    if container.duration is not None or "matroska" not in container.format.name or not stream.time_base:
        return None
    return RunJoiner(max(1, round(RESTART_BACK_S / stream.time_base)))


def scan_packets(container: InputContainer, stream: VideoStream, counts: Counts) -> _Scan:
    """Read every packet once (no decoding) and decode the first few video frames on the way, counting the video
    packets against the limits as they come."""
    ctx = stream.codec_context
    count = 0
    time_base = Fraction(0)
    first_pts: int | None = None
    last_pts = 0
    last_duration = 0
    keyframes = array("q")
    last_keyframe: Packet[Stream] | None = None
    last_corrupt = False
    head: list[VideoFrame] = []
    end_s: float | None = None
    start_s = (container.start_time or 0) / AV_TIME_BASE
    runs = _run_joiner(container, stream)
    try:
        for packet in container.demux():
            if packet.size == 0:
                continue  # the end-of-stream marker PyAV yields per stream
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is not None and runs is not None and packet.stream_index == stream.index:
                pts = runs.join(pts)
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
            counts.add(float((last_pts - first_pts) * time_base) if first_pts is not None else 0.0)
            # A packet the file ends inside is left to the truncation check, which names the cause.
            if count <= _HEAD_PACKETS and not packet.is_corrupt:
                head += _decode(ctx, packet, "the first frames", count)
            if count == _HEAD_PACKETS:
                head += _drain(ctx)
    except MemoryError:
        raise
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
    return _Scan(
        video_packets=count,
        video_span_s=float((last_pts + last_duration - first_pts) * time_base),
        end_s=end_s,
        last_packet_corrupt=last_corrupt,
        keyframe_interval_s=_keyframe_interval_s(keyframes, time_base),
        first_frame=head[0],
        last_keyframe=last_keyframe,
        last_keyframe_s=float((max(keyframes) - first_pts) * time_base),
    )


def _decode(ctx: VideoCodecContext, packet: Packet[Stream], where: str, index: int) -> list[VideoFrame]:
    try:
        return ctx.decode(packet)
    except MemoryError:
        raise
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
    except MemoryError:
        raise
    except av.error.FFmpegError as exc:
        raise MediaRejected(
            "undecodable_media",
            f"the first frames do not decode ({exc.strerror}): the recording is corrupt; record again",
        ) from None
    ctx.flush_buffers()
    return frames


def check_complete(scan: _Scan, declared_s: float | None) -> None:
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


def check_end_decodes(stream: VideoStream, scan: _Scan, size: tuple[int, int]) -> None:
    """Decode the last keyframe on its own: a keyframe needs no earlier frame, so this is cheap. It, and the
    first frame, must have the header's `size`: the pipeline decodes every frame at one size (a change in
    between is caught by the decoder, `pipelines.decode`)."""
    ctx = stream.codec_context
    where = f"the frames near the end (keyframe at {scan.last_keyframe_s:.1f} s)"
    frames = _decode(ctx, scan.last_keyframe, where, scan.video_packets)
    try:
        frames += ctx.decode(None)
    except MemoryError:
        raise
    except av.error.FFmpegError as exc:
        raise MediaRejected(
            "undecodable_media",
            f"{where} do not decode ({exc.strerror}): the recording is corrupt; record again",
        ) from None
    if not frames:
        raise MediaRejected("undecodable_media", f"{where} decode to no picture: the recording is corrupt")
    for frame, at in ((scan.first_frame, "the first frame"), (frames[0], where)):
        if (frame.width, frame.height) != size:
            raise MediaRejected(
                "resolution_changes",
                f"the video is {size[0]}x{size[1]} but {at} is {frame.width}x{frame.height}: the recording "
                f"changes size; re-encode it at one size (ffmpeg -i in -vf scale={size[0]}:{size[1]} out.mp4)",
            )
