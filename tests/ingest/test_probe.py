from __future__ import annotations

import logging
from pathlib import Path

import av
import pytest

from core.probes import VideoProbe
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from tests.support import media as mf

LIMITS = ProbeLimits()
ONE_FRAME = 1 / mf.FPS

# (case, builder, expected): a rejection code, or the fields the probe must report.
CASES: list[tuple[str, mf.Builder, str | dict[str, object]]] = [
    (
        "h264 mp4, faststart",
        mf.h264_mp4,
        {
            "container": "mp4",
            "codec": "h264",
            "width": 160,
            "height": 120,
            "rotation_deg": 0,
            "has_audio": False,
        },
    ),
    (
        "h264 mp4 with aac audio",
        mf.h264_mp4_with_audio,
        {"container": "mp4", "codec": "h264", "has_audio": True},
    ),
    ("vp8 webm", mf.vp8_webm, {"container": "webm", "codec": "vp8", "width": 160, "height": 120}),
    ("h264 mkv", mf.h264_mkv, {"container": "mkv", "codec": "h264"}),
    ("webm without duration", mf.webm_without_duration, {"container": "webm", "codec": "vp8"}),
    ("rotated mp4 (display matrix)", mf.rotated_mp4, {"rotation_deg": 90, "width": 160, "height": 120}),
    ("rotated webm (display matrix)", mf.rotated_webm, {"rotation_deg": 180}),
    ("rotate tag in mkv", mf.rotate_tag_mkv, {"rotation_deg": 270}),
    ("faststart mp4 cut in the media data", mf.truncated_faststart_mp4, "truncated_media"),
    ("faststart mp4 cut between frames", mf.truncated_faststart_mp4_at_frame, "truncated_media"),
    ("mp4 cut before its index", mf.truncated_moov_at_end_mp4, "truncated_media"),
    ("webm cut in half", mf.truncated_webm, "truncated_media"),
    ("webm header only", mf.header_only_webm, "truncated_media"),
    ("video track without frames", mf.zero_frame_webm, "zero_duration"),
    ("audio-only m4a", mf.audio_only_m4a, "no_video_stream"),
    ("mpeg-4 part 2", mf.mpeg4_part2_mp4, "unsupported_codec"),
    ("motion jpeg", mf.mjpeg_mkv, "unsupported_codec"),
    ("32x32", mf.tiny_mp4, "unsupported_dimensions"),
    ("4608x128", mf.oversized_mp4, "unsupported_dimensions"),
    ("240 fps", mf.fast_mp4, "unsupported_frame_rate"),
    ("corrupt first frames", mf.corrupt_first_frames_mp4, "undecodable_media"),
    ("text file", mf.text_file, "not_a_video"),
    ("random bytes", mf.random_bytes, "not_a_video"),
    ("jpeg named .mp4", mf.jpeg_image, "not_a_video"),
    ("empty file", mf.empty_file, "not_a_video"),
]


@pytest.mark.parametrize(("builder", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_probe_table(tmp_path: Path, builder: mf.Builder, expected: str | dict[str, object]) -> None:
    path = builder(tmp_path)
    assert path.stat().st_size < 1_000_000
    if isinstance(expected, str):
        with pytest.raises(MediaRejected) as caught:
            probe_video(path, LIMITS)
        assert caught.value.code == expected, caught.value.message
        assert caught.value.message  # a person is told what to do, not only given a code
        return
    probe = probe_video(path, LIMITS)
    assert {k: probe.to_dict()[k] for k in expected} == expected
    assert probe.duration_s == pytest.approx(mf.FRAMES / mf.FPS, abs=ONE_FRAME)
    assert probe.frame_rate == pytest.approx(mf.FPS, rel=0.01)


def test_to_dict_has_every_field(tmp_path: Path) -> None:
    probe = probe_video(mf.h264_mp4(tmp_path), LIMITS)
    assert probe.to_dict() == {
        "container": "mp4",
        "codec": "h264",
        "duration_s": 2.0,
        "frame_rate": 15.0,
        "width": 160,
        "height": 120,
        "rotation_deg": 0,
        "has_audio": False,
        "keyframe_interval_s": pytest.approx(mf.GOP / mf.FPS, abs=0.001),
    }
    assert VideoProbe(**probe.to_dict()) == probe  # type: ignore[arg-type]


def test_webm_without_duration_is_measured_from_packets(tmp_path: Path) -> None:
    path = mf.webm_without_duration(tmp_path)
    with av.open(str(path)) as container:  # the builder is honest: nothing declares a duration
        stream = container.streams.video[0]
        assert container.duration is None
        assert stream.duration is None
        assert all(p.duration == 0 for p in container.demux(stream) if p.size)
    probe = probe_video(path, LIMITS)
    assert probe.duration_s == pytest.approx(mf.FRAMES / mf.FPS, abs=ONE_FRAME)
    assert probe.frame_rate == pytest.approx(mf.FPS, rel=0.02)


def test_a_restarted_mediarecorder_webm_is_measured_as_one_timeline(tmp_path: Path) -> None:
    """A page reload mid-exam appends a second recorder run (its timestamps restart at zero): the recording lasts
    both runs, not the longer one, and its frame rate is still the camera's."""
    probe = probe_video(mf.webm_restarted(tmp_path), LIMITS)
    assert probe.duration_s == pytest.approx(2 * mf.FRAMES / mf.FPS, abs=ONE_FRAME)
    assert probe.frame_rate == pytest.approx(mf.FPS, rel=0.02)


@pytest.mark.parametrize("builder", [mf.h264_mp4, mf.vp8_webm], ids=["h264", "vp8"])
def test_keyframe_interval_is_the_median_gap(tmp_path: Path, builder: mf.Builder) -> None:
    assert probe_video(builder(tmp_path), LIMITS).keyframe_interval_s == pytest.approx(mf.GOP / mf.FPS, abs=0.002)


def test_single_keyframe_has_no_interval(tmp_path: Path) -> None:
    path = mf.write_video(tmp_path / "one_gop.mp4", gop=mf.FRAMES)
    assert probe_video(path, LIMITS).keyframe_interval_s is None


def test_av1_is_named_by_codec_not_by_decoder(tmp_path: Path) -> None:
    # FFmpeg decodes AV1 with "libdav1d"; the probe must still say "av1".
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("this PyAV build has no AV1 encoder to make the file with")
    assert probe_video(mf.av1_mp4(tmp_path), LIMITS).codec == "av1"


def test_codec_without_a_decoder_is_unsupported(tmp_path: Path) -> None:
    if "evc" in av.codecs_available:
        pytest.skip("this PyAV build can decode EVC")
    with pytest.raises(MediaRejected, match="cannot be decoded by this server") as caught:
        probe_video(mf.no_decoder_mp4(tmp_path), LIMITS)
    assert caught.value.code == "unsupported_codec"


@pytest.mark.parametrize(
    ("builder", "where"),
    [(mf.h264_mp4, "declared in the header"), (mf.webm_without_duration, "measured from packets")],
    ids=["declared", "measured"],
)
def test_duration_limit(tmp_path: Path, builder: mf.Builder, where: str) -> None:
    with pytest.raises(MediaRejected) as caught:
        probe_video(builder(tmp_path), ProbeLimits(max_duration_s=1.0))
    assert caught.value.code == "duration_too_long", where


def test_codec_set_comes_from_the_limits(tmp_path: Path) -> None:
    with pytest.raises(MediaRejected, match="'vp8'") as caught:
        probe_video(mf.vp8_webm(tmp_path), ProbeLimits(supported_codecs=frozenset({"h264"})))
    assert caught.value.code == "unsupported_codec"


def test_minimum_frame_rate(tmp_path: Path) -> None:
    with pytest.raises(MediaRejected, match="frames per second") as caught:
        probe_video(mf.h264_mp4(tmp_path), ProbeLimits(min_fps=20))
    assert caught.value.code == "unsupported_frame_rate"


@pytest.mark.parametrize(
    ("builder", "evidence"),
    [
        # MP4: the sample index in the moov box points past the end of the cut file
        (mf.truncated_faststart_mp4, "the file's index lists media data up to byte"),
        (mf.truncated_faststart_mp4_at_frame, "the file's index lists media data up to byte"),
        (mf.truncated_webm, "but the file declares 2.0 s"),
    ],
    ids=["mid-frame", "between frames", "webm"],
)
def test_truncation_says_how_it_was_found(tmp_path: Path, builder: mf.Builder, evidence: str) -> None:
    with pytest.raises(MediaRejected, match="cut short") as caught:
        probe_video(builder(tmp_path), LIMITS)
    assert evidence in caught.value.message


def test_missing_file_is_a_caller_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_video(tmp_path / "nope.mp4", LIMITS)


def test_one_log_line_per_probe(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good, bad = mf.h264_mp4(tmp_path), mf.text_file(tmp_path)
    with caplog.at_level(logging.INFO, logger="ingest.probe"):
        probe_video(good, LIMITS)
        with pytest.raises(MediaRejected):
            probe_video(bad, LIMITS)
    records = [r for r in caplog.records if r.name == "ingest.probe"]
    assert [r.getMessage() for r in records] == ["media probed", "media probed"]
    assert [(r.outcome, getattr(r, "code", None)) for r in records] == [  # type: ignore[attr-defined]
        ("accepted", None),
        ("rejected", "not_a_video"),
    ]
    assert records[0].codec == "h264" and records[0].source == str(good)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_side_px": 0},
        {"min_side_px": 500, "max_side_px": 400},
        {"min_fps": 0},
        {"min_fps": 60, "max_fps": 30},
        {"max_duration_s": 0},
        {"supported_codecs": frozenset()},
    ],
)
def test_limits_refuse_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ProbeLimits(**kwargs)  # type: ignore[arg-type]
