"""Builders for good and bad media files, written with PyAV into a test's tmp dir (no stored fixtures).

Each damaged file is made the way it happens in the field: an upload cut short (`cut`), a recorder that
never wrote its index, a browser that writes WebM without a duration, a camera that wrote garbage.
Files are small (160x120, two seconds, under 200 kB) and each takes milliseconds to build.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.stream import VideoStream

Builder = Callable[[Path], Path]

FPS = 15
FRAMES = 30  # two seconds
GOP = 10  # a keyframe every 10 frames: 0.667 s


def write_video(
    path: Path,
    *,
    codec: str = "libx264",
    size: tuple[int, int] = (160, 120),
    fps: int = FPS,
    frames: int = FRAMES,
    gop: int = GOP,
    pix_fmt: str = "yuv420p",
    container_options: dict[str, str] | None = None,
    rotation_ccw: float | None = None,
    tags: dict[str, str] | None = None,
    audio: bool = False,
) -> Path:
    """A moving gradient with a bouncing square: cheap to encode, and no two frames alike."""
    width, height = size
    options = {"g": str(gop)}
    if codec == "libx264":
        options |= {"preset": "ultrafast", "sc_threshold": "0"}  # keyframes exactly every `gop` frames
    if codec == "libvpx":
        options["threads"] = "1"  # VP8's threads spin-wait on each other: slow on a busy machine
    with av.open(str(path), "w", options=container_options or {}) as out:
        video = out.add_stream(codec, rate=fps, options=options)
        assert isinstance(video, VideoStream)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if rotation_ccw is not None:
            video.set_display_rotation(rotation_ccw)
        video.metadata.update(tags or {})
        sound = out.add_stream("aac", rate=48_000, layout="mono") if audio else None
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        for i in range(frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = ((ramp + 8 * i) % 256).astype(np.uint8)[None, :, None]
            x, y = (7 * i) % max(1, width - 16), (5 * i) % max(1, height - 16)
            image[y : y + 16, x : x + 16] = (255, 40, 40)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = round(frames / fps * 48_000)
            tone = (0.1 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48_000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48_000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def cut(path: Path, fraction: float) -> Path:
    """Keep the first `fraction` of the file, as an interrupted upload does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# Good files


def h264_mp4(d: Path) -> Path:
    return write_video(d / "h264.mp4", container_options={"movflags": "+faststart"})


def h264_mp4_with_audio(d: Path) -> Path:
    return write_video(d / "h264_audio.mp4", audio=True)


def vp8_webm(d: Path) -> Path:
    return write_video(d / "vp8.webm", codec="libvpx")


def h264_mkv(d: Path) -> Path:
    return write_video(d / "h264.mkv")


def av1_mp4(d: Path) -> Path:
    return write_video(d / "av1.mp4", codec="libsvtav1", size=(160, 128))


def webm_without_duration(d: Path) -> Path:
    """Like browser MediaRecorder output: no duration, no cues, and frames without a duration.

    The muxer's live mode leaves out the duration and the cues. It still writes each track's
    DefaultDuration, which MediaRecorder does not; that element is blanked into an EBML Void element of
    the same length, so the file stays valid and the demuxer sees blocks with no duration at all.
    """
    path = write_video(d / "mediarecorder.webm", codec="libvpx", container_options={"live": "1"})
    data = bytearray(path.read_bytes())
    header = data[: data.index(bytes.fromhex("1F43B675"))]  # everything before the first Cluster
    at = header.index(bytes.fromhex("23E383"))  # DefaultDuration: 3-byte ID, 1-byte size, value
    length = 3 + 1 + (data[at + 3] & 0x7F)
    data[at : at + length] = bytes([0xEC, 0x80 | (length - 2)]) + bytes(length - 2)  # Void, same length
    path.write_bytes(bytes(data))
    return path


def webm_restarted(d: Path) -> Path:
    """A MediaRecorder recording the page reloaded in the middle of: two live WebM streams, each with its own
    header and timestamps from zero, appended into one upload (what the browser recorder sends)."""
    run = webm_without_duration(d).read_bytes()
    path = d / "restarted.webm"
    path.write_bytes(run + run)
    return path


def rotated_mp4(d: Path) -> Path:
    """A phone held upright: the display matrix says turn 90 degrees clockwise (legacy rotate=90)."""
    return write_video(d / "rotated.mp4", rotation_ccw=-90)


def rotated_webm(d: Path) -> Path:
    return write_video(d / "rotated.webm", codec="libvpx", rotation_ccw=180)


def rotate_tag_mkv(d: Path) -> Path:
    """Rotation given only by the legacy `rotate` tag, which Matroska keeps as a track tag."""
    return write_video(d / "rotate_tag.mkv", tags={"rotate": "270"})


# Damaged or unacceptable files


def truncated_faststart_mp4(d: Path) -> Path:
    """Index at the front (it lists every frame), media data cut in the middle."""
    return cut(write_video(d / "cut_faststart.mp4", container_options={"movflags": "+faststart"}), 0.5)


def truncated_faststart_mp4_at_frame(d: Path) -> Path:
    """Cut exactly where a frame starts, so no frame is left half-written: only the timestamps tell."""
    path = write_video(d / "cut_at_frame.mp4", container_options={"movflags": "+faststart"})
    with av.open(str(path)) as container:
        starts = [p.pos for p in container.demux(video=0) if p.size and p.pos is not None]
    path.write_bytes(path.read_bytes()[: starts[FRAMES // 2]])
    return path


def truncated_moov_at_end_mp4(d: Path) -> Path:
    """The index comes last, so cutting the file loses it."""
    return cut(write_video(d / "cut_moov_at_end.mp4"), 0.6)


def truncated_webm(d: Path) -> Path:
    return cut(write_video(d / "cut.webm", codec="libvpx"), 0.5)


def zero_frame_webm(d: Path) -> Path:
    """A video track that never got a frame, beside audio that did (the camera failed, the mic worked)."""
    path = d / "zero_frames.webm"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libvpx", rate=FPS)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        sound = out.add_stream("libopus", rate=48_000, layout="mono")
        for i in range(50):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
            chunk.sample_rate, chunk.pts = 48_000, i * 960
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def header_only_webm(d: Path) -> Path:
    """A recorder stopped before its first frame: the WebM header and nothing else."""
    path = d / "header_only.webm"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libvpx", rate=FPS)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        out.start_encoding()
    return path


def audio_only_m4a(d: Path) -> Path:
    path = d / "audio.m4a"
    with av.open(str(path), "w", format="ipod") as out:
        sound = out.add_stream("aac", rate=48_000, layout="mono")
        for i in range(40):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48_000, i * 1024
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def mpeg4_part2_mp4(d: Path) -> Path:
    return write_video(d / "mpeg4.mp4", codec="mpeg4")


def mjpeg_mkv(d: Path) -> Path:
    return write_video(d / "mjpeg.mkv", codec="mjpeg", pix_fmt="yuvj420p")


def no_decoder_mp4(d: Path) -> Path:
    """MPEG-5 EVC, a codec this FFmpeg build can mux but not decode. The packets are placeholders:
    without a decoder nothing ever looks inside them."""
    path = d / "evc.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_mux_stream("evc", rate=FPS, width=160, height=120)
        for i in range(FRAMES):
            packet = av.Packet(bytes([0, 0, 0, 8, 2, 2]) + bytes(40))
            packet.stream, packet.time_base = stream, Fraction(1, FPS)
            packet.pts = packet.dts = i
            packet.duration = 1
            packet.is_keyframe = i % GOP == 0
            out.mux(packet)
    return path


def tiny_mp4(d: Path) -> Path:
    return write_video(d / "tiny.mp4", size=(32, 32))


def oversized_mp4(d: Path) -> Path:
    return write_video(d / "oversized.mp4", size=(4608, 128), frames=5)


def fast_mp4(d: Path) -> Path:
    return write_video(d / "fast.mp4", fps=240, frames=60, gop=60)


def corrupt_first_frames_mp4(d: Path) -> Path:
    """Random bytes written over the first three frames' data, as a failing disk or a bad copy leaves it."""
    path = h264_mp4(d)
    with av.open(str(path)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size and p.pos is not None][:3]
    start, end = spans[0][0], spans[-1][0] + spans[-1][1]
    data = bytearray(path.read_bytes())
    data[start:end] = np.random.default_rng(7).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def text_file(d: Path) -> Path:
    path = d / "notes.txt"  # .txt matters: FFmpeg would open it as teletype art by the extension
    path.write_text("These are my exam notes, not a video.\n" * 40)
    return path


def random_bytes(d: Path) -> Path:
    path = d / "random.bin"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 64_000, dtype=np.uint8).tobytes())
    return path


def jpeg_image(d: Path) -> Path:
    """A still photo named like a video: FFmpeg opens it as a one-frame MJPEG "video"."""
    path = d / "photo.mp4"
    ok, encoded = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def empty_file(d: Path) -> Path:
    path = d / "empty.webm"
    path.touch()
    return path
