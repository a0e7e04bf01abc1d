"""A whole sample session through decode, detectors and segmenter, in a plain loop (no Ray, no storage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.vocabulary import FlagKind
from detectors import AwayConfig, Signals
from ingest.probe import ProbeLimits, probe_video
from models import load_manifest
from pipelines.analysis import SessionResult, analyze_file, segment_session
from pipelines.evidence import flag_evidence
from pipelines.segments import ExamPolicy, KindPolicy
from proctor.samples import SampleSession, build_sample_session


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="module")
def result(sample: SampleSession) -> SessionResult:
    probe = probe_video(sample.video_path, ProbeLimits())
    return analyze_file(sample.video_path, round(probe.duration_s * 1000), 2000)


def overlaps(seg_start: int, seg_end: int, start_s: float, end_s: float) -> bool:
    return seg_start < end_s * 1000 and start_s * 1000 < seg_end


def test_the_second_person_and_the_turned_head_are_flagged_where_they_are(
    sample: SampleSession, result: SessionResult
) -> None:
    for kind, truth in [
        (FlagKind.MULTIPLE_FACES, next(i for i in sample.intervals if i.faces == 2)),
        (FlagKind.LOOKING_AWAY, next(i for i in sample.intervals if i.looking_away)),
    ]:
        found = [s for s in result.segments if s.kind == kind]
        assert len(found) == 1, (kind, result.segments)
        assert abs(found[0].start_ms - truth.start_s * 1000) <= 400
        assert abs(found[0].end_ms - truth.end_s * 1000) <= 400


def test_no_flag_lands_on_the_candidate_at_the_screen(sample: SampleSession, result: SessionResult) -> None:
    calm = [i for i in sample.intervals if i.faces == 1 and i.looking_away is False]
    for seg in result.segments:
        for interval in calm:
            inside = max(0, min(seg.end_ms, interval.end_s * 1000) - max(seg.start_ms, interval.start_s * 1000))
            assert inside <= 400, f"{seg} flags {interval.what}"


def test_result_carries_versions_signals_and_risk(result: SessionResult) -> None:
    assert {k for k in result.detector_versions if not k.startswith("model:")} == {"face_analysis", "quality"}
    assert set(load_manifest()) == {
        k.removeprefix("model:") for k in result.detector_versions if k.startswith("model:")
    }
    assert 290 <= len(result.signals) <= 300  # 60 s at 5 sampled frames per second
    assert 0 < result.risk <= 1


def test_rescoring_under_a_new_policy_needs_only_the_signals(result: SessionResult) -> None:
    off = ExamPolicy(kinds={FlagKind.MULTIPLE_FACES: KindPolicy(enabled=False)})
    segments, risk = segment_session(result.signals, off, AwayConfig(), duration_ms=result.duration_ms)
    assert FlagKind.MULTIPLE_FACES not in {s.kind for s in segments}
    assert risk < result.risk


def test_a_covered_camera_is_blocked_and_shows_no_face_but_darkness_is_unknown() -> None:
    ts = np.arange(4, dtype=np.int64) * 200
    cols = {name: np.zeros(4) for name in ("face_count", "covered", "too_dark")}
    cols["covered"][:2] = 1
    cols["too_dark"][2] = 1
    cols |= {c: np.full(4, np.nan) for c in ("head_yaw_deg", "head_pitch_deg", "eye_gaze_h", "eye_gaze_v")}
    evidence, _ = flag_evidence(Signals(ts, cols), AwayConfig())
    assert evidence[FlagKind.NO_FACE][:2].tolist() == [1.0, 1.0], "nothing can be seen through a covered lens"
    assert np.isnan(evidence[FlagKind.NO_FACE][2]) and evidence[FlagKind.NO_FACE][3] == 1.0
    assert evidence[FlagKind.CAMERA_BLOCKED].tolist() == [1, 1, 0, 0]
    assert np.isnan(evidence[FlagKind.LOOKING_AWAY]).all(), "no face is unknown gaze, not away"


def test_a_recording_with_no_frames_is_refused(tmp_path: Path, sample: SampleSession) -> None:
    with pytest.raises(ValueError, match="no frame could be sampled"):
        analyze_file(sample.video_path, 1, None, analyzer=lambda *_: Signals(np.zeros(0, dtype=np.int64)))  # type: ignore[arg-type]


def test_proctor_analyze_writes_the_documented_json(sample: SampleSession, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from proctor.cli import app

    out = tmp_path / "result.json"
    args = ["analyze", str(sample.video_path), "--events", str(sample.events_path), "--json", str(out)]
    ran = CliRunner().invoke(app, args)
    assert ran.exit_code == 0, ran.output
    report = json.loads(out.read_text())
    assert report["video"] == sample.video_path.name and report["duration_s"] == pytest.approx(60.0)
    assert {s["kind"] for s in report["segments"]} >= {"multiple_faces", "looking_away"}
    assert set(report["segments"][0]) == {"kind", "start_s", "end_s", "score"}
    assert len(report["events"]) == 6


def test_proctor_analyze_refuses_a_broken_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from proctor.cli import app

    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    ran = CliRunner().invoke(app, ["analyze", str(bad)])
    assert ran.exit_code == 2 and "not_a_video" in ran.output
