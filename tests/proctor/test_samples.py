from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import av
import pytest

from ingest.event_log import EventType, parse_event_log
from ingest.probe import ProbeLimits, probe_video
from proctor.samples import SampleSession, build_sample_session, write_filler_video

DURATION_S = 12.0
FPS = 15


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("h264"), duration_s=DURATION_S, fps=FPS, seed=3)


def test_sample_probes_valid_with_the_declared_shape(session: SampleSession) -> None:
    probe = probe_video(session.video_path, ProbeLimits())
    assert (probe.container, probe.codec, probe.width, probe.height) == ("mp4", "h264", 640, 480)
    assert session.duration_s == DURATION_S
    assert probe.duration_s == pytest.approx(session.duration_s, abs=1 / FPS)
    assert probe.frame_rate == pytest.approx(FPS, rel=0.01)
    assert probe.keyframe_interval_s == pytest.approx(2.0, abs=1 / FPS)


def test_intervals_tile_the_recording_on_frame_boundaries(session: SampleSession) -> None:
    intervals = session.intervals
    assert intervals[0].start_s == 0
    assert intervals[-1].end_s == session.duration_s
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(intervals))
    assert all(iv.end_s - iv.start_s >= 1 / FPS for iv in intervals)
    assert all(round(iv.start_s * FPS, 9).is_integer() for iv in intervals)


def test_script_has_every_scene(session: SampleSession) -> None:
    shown = {(iv.faces, iv.looking_away) for iv in session.intervals}
    assert shown == {(1, False), (0, None), (2, False), (1, True)}
    assert session.intervals[0].faces == 1 and "candidate" in session.intervals[0].what


def test_frames_move_even_while_the_scene_holds(session: SampleSession) -> None:
    with av.open(str(session.video_path)) as container:
        first = [f.to_ndarray(format="gray") for _, f in zip(range(2), container.decode(video=0), strict=False)]
    assert len(first) == 2
    assert abs(first[0].astype(int) - first[1].astype(int)).mean() > 0.1  # not a frozen picture


def test_events_fit_the_timeline(session: SampleSession) -> None:
    assert session.events_path is not None
    with session.events_path.open("rb") as lines:
        events = parse_event_log(lines)
    assert all(0 <= e.t_ms < session.duration_s * 1000 for e in events)
    kinds = [e.type for e in events]
    assert kinds.count(EventType.FOCUS_LOST) == kinds.count(EventType.FOCUS_GAINED) >= 2
    (paste,) = [e for e in events if e.type is EventType.PASTE]
    (two_faces,) = [iv for iv in session.intervals if iv.faces == 2]
    assert two_faces.start_s * 1000 <= paste.t_ms < two_faces.end_s * 1000


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, session: SampleSession) -> None:
    again = build_sample_session(tmp_path / "again", duration_s=DURATION_S, fps=FPS, seed=3, with_events=False)
    other = build_sample_session(tmp_path / "other", duration_s=DURATION_S, fps=FPS, seed=4, with_events=False)
    assert again.events_path is None
    assert again.intervals == session.intervals
    assert _sha(again.video_path) == _sha(session.video_path)
    assert _sha(other.video_path) != _sha(session.video_path)


def test_vp8_variant(tmp_path: Path) -> None:
    settings: dict[str, object] = {"duration_s": 10, "fps": 10, "width": 320, "height": 240, "codec": "vp8"}
    sample = build_sample_session(tmp_path / "a", **settings)  # type: ignore[arg-type]
    assert sample.video_path.suffix == ".webm"
    probe = probe_video(sample.video_path, ProbeLimits())
    assert (probe.container, probe.codec, probe.width, probe.height) == ("webm", "vp8", 320, 240)
    assert probe.duration_s == pytest.approx(10, abs=1 / 10)
    again = build_sample_session(tmp_path / "b", **settings)  # type: ignore[arg-type]
    assert _sha(again.video_path) == _sha(sample.video_path)  # WebM too: no random segment UIDs


@pytest.mark.parametrize(
    "kwargs",
    [
        {"codec": "theora"},
        {"duration_s": 5},
        {"fps": 0},
        {"width": 641},
        {"height": 32},
        {"duration_s": 10, "fps": 1},  # the 2.5 s coffee scene would get no frame
    ],
)
def test_refuses_settings_it_cannot_honour(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_sample_session(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_filler_video_is_valid_and_about_the_asked_size(tmp_path: Path) -> None:
    size = 5_000_000
    path = write_filler_video(tmp_path / "filler.mp4", size)
    assert abs(path.stat().st_size - size) <= 0.2 * size
    probe = probe_video(path, ProbeLimits())
    assert (probe.container, probe.codec, probe.width, probe.height) == ("mp4", "h264", 640, 480)
    assert probe.keyframe_interval_s == pytest.approx(2.0)
    assert probe.duration_s > 1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
