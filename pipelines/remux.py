"""A seekable copy of a browser's WebM recording: the same packets, rewritten with a duration and a seek index.

Chromium's `MediaRecorder` writes WebM as a live stream: it never goes back to what it wrote, so the header has
no duration and the file has no Cues (the index of keyframe positions). A reviewer's `<video>` shows no duration
for such a file and cannot seek in it, and every chunk of the analysis that seeks into it has the demuxer read
the file from the start up to its chunk. Remuxing copies the video packets (and the first audio stream's) with
their timestamps into a local file that can be seeked, where libavformat's Matroska muxer writes the duration
and the Cues when it closes. Nothing is decoded or encoded: the frames are bit-identical, at the same times;
except that a recording the browser's recorder restarted in (a page reload: a second WebM stream, timestamps
from zero again, appended to the same upload) is put on one timeline (`core.media_runs`), as ingest measured it.

The recording is untrusted (a platform uploaded it; ingest probed it in a sandbox and stored the probe on its
Media row). Demuxing is all this costs, and it is bounded by what that probe measured: `RemuxLimits` allows
the packets its duration and frame rate account for, with slack, and no more bytes than the stored file holds,
so a file that demuxes into far more than it showed the probe is refused (`RemuxRefused`) after the bound.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import av.error
from av.audio.stream import AudioStream
from av.codec.codec import UnknownCodecError
from av.container import InputContainer
from av.stream import Disposition, Stream
from av.video.stream import VideoStream

from core.media_runs import RESTART_BACK_S, RunJoiner
from core.probes import VideoProbe
from storage.object_store import ObjectExists, ObjectStore

log = logging.getLogger(__name__)

_MATROSKA = "matroska,webm"  # FFmpeg's one demuxer for both
_WEBM_CODECS = frozenset({"vp8", "vp9", "av1", "opus", "vorbis"})  # what a WebM may hold; else it stays Matroska
AUDIO_PACKETS_PER_S = 200  # Opus frames are 2.5 to 60 ms; browsers send 20 ms (50 a second)


class RemuxRefused(ValueError):
    """The recording could not be remuxed (FFmpeg failed, or it holds more than its probe showed). Its original
    still plays from the start; processing carries on without a seekable copy."""


@dataclass(frozen=True)
class RemuxLimits:
    """How much a remux may read: packets (all streams) and their bytes."""

    max_packets: int
    max_bytes: int

    def __post_init__(self) -> None:
        if self.max_packets < 1 or self.max_bytes < 1:
            raise ValueError(f"RemuxLimits: need max_packets >= 1 and max_bytes >= 1, got {self}")

    @classmethod
    def for_recording(cls, probe: VideoProbe, size_bytes: int) -> RemuxLimits:
        """From ingest's probe of the file and its stored size: the video packets the probe counted (its frame
        rate is packets over duration) plus a tenth and a second's worth, audio at `AUDIO_PACKETS_PER_S`, and
        no more packet bytes than the file."""
        seconds = probe.duration_s + 1.0
        video = math.ceil(probe.duration_s * probe.frame_rate * 1.1 + probe.frame_rate) + 16
        audio = math.ceil(seconds * AUDIO_PACKETS_PER_S) if probe.has_audio else 0
        return cls(max_packets=video + audio, max_bytes=max(1, size_bytes))


@dataclass(frozen=True)
class RemuxedCopy:
    """What `remux_seekable` wrote."""

    content_type: str  # video/webm, or video/x-matroska for codecs WebM does not allow
    packets: int
    duration_s: float


def needs_seekable_copy(source: str | Path | BinaryIO) -> bool:
    """Whether the recording is a WebM or Matroska file without a duration: what a live muxer (a browser's
    `MediaRecorder`) writes, with no Cues either. MP4 and any Matroska that declares its duration are left
    alone. Raises `RemuxRefused` when FFmpeg cannot open the file."""
    try:
        with av.open(str(source) if isinstance(source, Path) else source, "r") as container:
            return container.format.name == _MATROSKA and container.duration is None
    except av.error.FFmpegError as exc:
        raise RemuxRefused(f"FFmpeg could not open the recording: {exc}") from None


def remux_seekable(source: str | Path | BinaryIO, destination: Path, limits: RemuxLimits) -> RemuxedCopy:
    """Copy the recording's first video stream, and its first audio stream if any, packet for packet into
    ``destination`` (a local file, so the muxer can go back to write the duration and the Cues). Raises
    `RemuxRefused` when FFmpeg fails, the packets exceed ``limits``, or the copy still has no duration."""
    try:
        with av.open(str(source) if isinstance(source, Path) else source, "r") as container:
            if container.format.name != _MATROSKA:
                raise RemuxRefused(f"the recording is {container.format.long_name!r}, not WebM or Matroska")
            video, audio = _kept_streams(container)
            streams: list[Stream] = [video, *audio]
            names = {s.codec_context.codec.canonical_name if s.codec_context else s.type for s in streams}
            webm = names <= _WEBM_CODECS
            packets = _copy_packets(container, video, audio, destination, "webm" if webm else "matroska", limits)
        with av.open(str(destination), "r") as written:
            duration = written.duration
    except (av.error.FFmpegError, UnknownCodecError) as exc:
        raise RemuxRefused(f"FFmpeg could not remux the recording: {exc}") from None
    if duration is None:
        raise RemuxRefused("the remuxed copy still declares no duration")
    return RemuxedCopy("video/webm" if webm else "video/x-matroska", packets, duration / av.time_base)


def store_seekable_copy(
    store: ObjectStore, source_key: str, target_key: str, probe: VideoProbe, *, kind: str = "recording"
) -> str | None:
    """Write a seekable copy of the object at ``source_key`` (which ingest probed as ``probe``) to ``target_key``
    when it needs one; the copy's key, or None when the recording needs none, is not stored, or could not be
    remuxed (logged). Idempotent: a copy already stored (by an earlier attempt at the job, or a worker racing
    this one) is kept. The original is never touched."""
    if store.stat(target_key) is not None:
        return target_key
    original = store.stat(source_key)
    if original is None:
        return None
    limits = RemuxLimits.for_recording(probe, original.size)
    with store.open(source_key) as recording, tempfile.TemporaryDirectory(prefix="remux-") as scratch:
        try:
            if not needs_seekable_copy(recording):
                return None
            recording.seek(0)
            copy = remux_seekable(recording, Path(scratch) / "seekable", limits)
        except RemuxRefused as refused:
            log.warning("recording not remuxed", extra={"key": source_key, "kind": kind, "reason": str(refused)})
            return None
        written = Path(scratch) / "seekable"
        with written.open("rb") as body, contextlib.suppress(ObjectExists):  # another attempt stored it meanwhile
            store.put_file(target_key, body, written.stat().st_size, content_type=copy.content_type)
    log.info(
        "seekable copy stored",
        extra={"key": target_key, "kind": kind, "packets": copy.packets, "duration_s": round(copy.duration_s, 3)},
    )
    return target_key


def _kept_streams(container: InputContainer) -> tuple[VideoStream, list[AudioStream]]:
    """The recording (the first video stream that is not cover art) and its first audio stream, if any."""
    videos = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not videos:
        raise RemuxRefused("the recording has no video stream")
    return videos[0], list(container.streams.audio[:1])


def _copy_packets(
    container: InputContainer,
    video: VideoStream,
    audio: list[AudioStream],
    destination: Path,
    fmt: str,
    limits: RemuxLimits,
) -> int:
    """Mux every packet of ``video`` and ``audio`` into ``destination``; the number of packets copied."""
    count = size = 0
    with av.open(str(destination), "w", format=fmt) as out:
        copied = out.add_stream_from_template(video)
        if video.average_rate:
            # The muxer writes it as the track's DefaultDuration: the last frame then has a duration, so the
            # copy's duration covers it (the blocks' timestamps, the only times a player uses, are unchanged).
            copied.codec_context.framerate = video.average_rate
        targets: dict[int, Stream] = {video.index: copied, **{a.index: out.add_stream_from_template(a) for a in audio}}
        runs = {s.index: RunJoiner(max(1, round(RESTART_BACK_S / s.time_base))) for s in (video, *audio) if s.time_base}
        for packet in container.demux([video, *audio]):
            if packet.size == 0:  # the demuxer's end-of-stream marker: no data
                continue
            joiner = runs.get(packet.stream.index)
            if joiner is not None and packet.pts is not None:  # a recorder restarted mid-file: one timeline
                joined = joiner.join(packet.pts)
                shift, packet.pts = joined - packet.pts, joined
                if packet.dts is not None:
                    packet.dts += shift
            count, size = count + 1, size + packet.size
            if count > limits.max_packets or size > limits.max_bytes:
                raise RemuxRefused(
                    f"the recording holds more than its probe showed ({count} packets, {size} bytes; at most "
                    f"{limits.max_packets} and {limits.max_bytes}): it is not the file that was probed, or is hostile"
                )
            packet.stream = targets[packet.stream.index]
            out.mux(packet)
    return count
