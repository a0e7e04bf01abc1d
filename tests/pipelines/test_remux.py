"""The seekable copy of a browser's recording: same packets and frames, now with a duration and Cues."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from core.probes import VideoProbe
from ingest.probe import ProbeLimits, inspect_video
from pipelines.remux import RemuxLimits, RemuxRefused, needs_seekable_copy, remux_seekable, store_seekable_copy
from storage.object_store import ObjectStore, S3Location
from tests.support import media as mf

CUES = bytes.fromhex("1C53BB6B")  # the Matroska Cues element's ID: the seek index


def mediarecorder_webm(d: Path) -> Path:
    """Four seconds of VP8 written as MediaRecorder writes it (live: no duration, no Cues)."""
    return mf.write_video(d / "recorder.webm", codec="libvpx", frames=4 * mf.FPS, container_options={"live": "1"})


def mediarecorder_mkv_with_audio(d: Path) -> Path:
    """Chromium's other container: Matroska (here VP8 with AAC, which WebM does not allow), live as well."""
    return mf.write_video(
        d / "recorder.mkv", codec="libvpx", frames=3 * mf.FPS, audio=True, container_options={"live": "1"}
    )


def packets(path: Path) -> list[tuple[str, int | None, int | None, bool, bytes]]:
    with av.open(str(path)) as container:
        return [(p.stream.type, p.pts, p.dts, p.is_keyframe, bytes(p)) for p in container.demux() if p.size]


def frames(path: Path) -> list[tuple[int | None, NDArray[np.uint8]]]:
    with av.open(str(path)) as container:
        return [(f.pts, np.asarray(f.to_ndarray(format="rgb24"), np.uint8)) for f in container.decode(video=0)]


def limits_for(path: Path) -> RemuxLimits:
    return RemuxLimits.for_recording(inspect_video(path, ProbeLimits()), path.stat().st_size)


@pytest.mark.parametrize(
    ("builder", "content_type"),
    [
        (mediarecorder_webm, "video/webm"),
        (mf.webm_without_duration, "video/webm"),  # no DefaultDuration either: blocks with no duration at all
        (mediarecorder_mkv_with_audio, "video/x-matroska"),
    ],
)
def test_a_live_recording_remuxes_to_a_seekable_copy_with_the_same_packets_and_frames(
    tmp_path: Path, builder: mf.Builder, content_type: str
) -> None:
    source = builder(tmp_path)
    with av.open(str(source)) as original:
        assert original.duration is None and CUES not in source.read_bytes(), "built like MediaRecorder's output"
    assert needs_seekable_copy(source)

    copy = remux_seekable(source, tmp_path / "seekable", limits_for(source))

    written = tmp_path / "seekable"
    assert copy.content_type == content_type
    with av.open(str(written)) as seekable:
        assert seekable.duration is not None and seekable.duration / av.time_base == pytest.approx(copy.duration_s)
        assert [s.type for s in seekable.streams] == [
            s for s in ("video", "audio") if s in {p[0] for p in packets(source)}
        ]
    assert CUES in written.read_bytes(), "the copy has a seek index"
    assert not needs_seekable_copy(written)
    assert copy.duration_s >= inspect_video(source, ProbeLimits()).duration_s - 1 / mf.FPS  # up to the last frame
    before, after = packets(source), packets(written)
    assert copy.packets == len(before) == len(after)
    assert after == before, "every packet copied as it was: stream, timestamps, keyframe flag and payload"
    decoded, redecoded = frames(source), frames(written)
    assert len(decoded) == len(redecoded) >= 2 * mf.FPS
    for (pts, image), (pts_again, image_again) in zip(decoded, redecoded, strict=True):
        assert pts == pts_again and np.array_equal(image, image_again), f"frame at {pts} differs"


def test_the_copy_seeks_to_a_keyframe_near_the_middle(tmp_path: Path) -> None:
    source = mediarecorder_webm(tmp_path)
    remux_seekable(source, tmp_path / "seekable", limits_for(source))
    with av.open(str(tmp_path / "seekable")) as seekable:
        stream = seekable.streams.video[0]
        assert stream.time_base is not None
        seekable.seek(int(2.5 / stream.time_base), stream=stream)
        first = next(seekable.decode(stream))
    assert first.time is not None and 1.9 <= first.time <= 2.5  # the keyframe at or before 2.5 s (every 0.67 s)


def test_a_recording_the_browser_restarted_in_is_copied_onto_one_timeline(tmp_path: Path) -> None:
    """A page reload appended a second recorder run whose timestamps start at zero again: the copy plays the
    runs one after the other, every frame once, for as long as ingest measured the recording."""
    source = mf.webm_restarted(tmp_path)
    copy = remux_seekable(source, tmp_path / "seekable", limits_for(source))

    times = [pts for pts, _ in frames(tmp_path / "seekable")]
    assert len(times) == 2 * mf.FRAMES
    assert all(b > a for a, b in itertools.pairwise(times)), "timestamps only go forward"
    one_frame = 1 / mf.FPS
    assert copy.duration_s == pytest.approx(inspect_video(source, ProbeLimits()).duration_s, abs=one_frame)
    original, copied = ([image for _, image in frames(path)] for path in (source, tmp_path / "seekable"))
    assert all(np.array_equal(a, b) for a, b in zip(original, copied, strict=True)), "the same frames, in order"


@pytest.mark.parametrize("builder", [mf.vp8_webm, mf.h264_mkv, mf.h264_mp4])
def test_recordings_that_declare_their_duration_are_left_alone(tmp_path: Path, builder: mf.Builder) -> None:
    assert not needs_seekable_copy(builder(tmp_path))


def test_a_recording_holding_more_than_its_probe_showed_is_refused(tmp_path: Path) -> None:
    source = mediarecorder_webm(tmp_path)
    with pytest.raises(RemuxRefused, match="more than its probe showed"):
        remux_seekable(source, tmp_path / "seekable", RemuxLimits(max_packets=10, max_bytes=10**9))
    with pytest.raises(RemuxRefused, match="more than its probe showed"):
        remux_seekable(source, tmp_path / "seekable2", RemuxLimits(max_packets=10**6, max_bytes=1000))


@pytest.mark.parametrize(
    "builder", [mf.random_bytes, mf.text_file, mf.audio_only_m4a, mf.empty_file, mf.header_only_webm]
)
def test_what_is_no_recording_is_refused_not_raised_as_an_ffmpeg_error(tmp_path: Path, builder: mf.Builder) -> None:
    source = builder(tmp_path)
    try:
        assert not needs_seekable_copy(source)
    except RemuxRefused as refused:
        assert "could not open" in str(refused)
    with pytest.raises(RemuxRefused):
        remux_seekable(source, tmp_path / "seekable", RemuxLimits(max_packets=1000, max_bytes=10**7))


def test_the_limits_follow_the_probe() -> None:
    video = VideoProbe("webm", "vp8", 60.0, 30.0, 640, 480, 0, has_audio=False, keyframe_interval_s=2.0)
    limits = RemuxLimits.for_recording(video, 5_000_000)
    assert 1800 < limits.max_packets < 2100 and limits.max_bytes == 5_000_000
    with_audio = RemuxLimits.for_recording(VideoProbe(**{**video.to_dict(), "has_audio": True}), 5_000_000)
    assert with_audio.max_packets - limits.max_packets == 61 * 200


def test_the_copy_is_stored_beside_the_upload_once(tmp_path: Path, s3: S3Location) -> None:
    store = ObjectStore(s3)
    base = f"remux-{uuid.uuid4().hex[:8]}/"
    source = mediarecorder_webm(tmp_path)
    probe = inspect_video(source, ProbeLimits())
    with source.open("rb") as body:
        store.put_file(base + "media/webcam", body, source.stat().st_size, content_type="video/webm")

    key = store_seekable_copy(store, base + "media/webcam", base + "derived/seekable/webcam", probe, kind="webcam")

    assert key == base + "derived/seekable/webcam"
    stored = store.stat(key)
    assert stored is not None and stored.content_type == "video/webm"
    (tmp_path / "stored").write_bytes(b"".join(store.iter_chunks(key)))
    assert packets(tmp_path / "stored") == packets(source) and CUES in (tmp_path / "stored").read_bytes()
    assert b"".join(store.iter_chunks(base + "media/webcam")) == source.read_bytes(), "the upload is untouched"
    again = store_seekable_copy(store, base + "media/webcam", key, probe, kind="webcam")  # a retried job
    assert again == key and store.stat(key) == stored

    seekable = mf.vp8_webm(tmp_path)
    with seekable.open("rb") as body:
        store.put_file(base + "media/screen", body, seekable.stat().st_size, content_type="video/webm")
    screen = store_seekable_copy(
        store, base + "media/screen", base + "derived/seekable/screen", inspect_video(seekable, ProbeLimits())
    )
    assert screen is None and store.stat(base + "derived/seekable/screen") is None, "nothing to fix, nothing stored"
