"""Evidence rules and explanations: a head turned too far to track, the exam's tolerances, why a flag fired."""

from __future__ import annotations

import numpy as np
import pytest

from core.vocabulary import FlagKind
from detectors import AwayConfig, Signals
from pipelines.analysis import segment_session
from pipelines.evidence import TurnedAway, flag_evidence, turned_away_losses
from pipelines.segments import AwayTolerances, ExamPolicy

STEP = 200


def session(yaw: list[float], faces: list[int] | None = None, covered: list[int] | None = None) -> Signals:
    n = len(yaw)
    y = np.array(yaw, float)
    face_count = np.array(faces if faces is not None else [1] * n, float)
    return Signals(
        np.arange(n, dtype=np.int64) * STEP,
        {
            "face_count": face_count,
            "covered": np.array(covered if covered is not None else [0] * n, float),
            "too_dark": np.zeros(n),
            "head_yaw_deg": y,
            "head_pitch_deg": np.where(np.isfinite(y), 0.0, np.nan),
            "eye_gaze_h": np.full(n, np.nan),
            "eye_gaze_v": np.full(n, np.nan),
        },
    )


NAN = float("nan")


@pytest.mark.parametrize(
    ("faces", "score", "expected"),
    [
        ([1, 1, 0, 0, 0], [0.2, 1.2, NAN, NAN, NAN], [0, 0, 1, 1, 1]),  # lost while turning: still away
        ([1, 1, 0, 0, 0], [0.2, 0.1, NAN, NAN, NAN], [0, 0, 0, 0, 0]),  # lost while facing the screen: gone
        ([1, 0, 0, 0, 0, 0, 0, 0], [1.2] + [NAN] * 7, [0, 1, 1, 1, 1, 1, 0, 0]),  # at most max_ms (1 s here)
        ([1, 1, 0, 1, 0], [1.2, 0.1, NAN, 0.1, NAN], [0, 0, 0, 0, 0]),  # the turn ended before the loss
    ],
)
def test_a_face_lost_while_turning_away_is_looking_away(
    faces: list[int], score: list[float], expected: list[int]
) -> None:
    ts = np.arange(len(faces), dtype=np.int64) * STEP
    rule = TurnedAway(within_ms=1000, from_score=0.7, max_ms=1000)
    lost = turned_away_losses(ts, np.array(faces, float), np.array(score), rule)
    assert lost.astype(int).tolist() == expected


def test_turning_out_of_view_raises_looking_away_not_no_face() -> None:
    yaw = [0.0] * 100 + [10.0, 20.0, 30.0, 40.0] + [NAN] * 15 + [0.0] * 100
    faces = [1] * 104 + [0] * 15 + [1] * 100
    segments, _ = segment_session(session(yaw, faces), ExamPolicy(), AwayConfig(), duration_ms=len(yaw) * STEP)
    kinds = {s.kind for s in segments}
    assert kinds == {FlagKind.LOOKING_AWAY}


def test_two_seconds_of_a_covered_lens_is_a_flag() -> None:
    n = 150
    covered = [0] * 50 + [1] * 12 + [0] * (n - 62)  # 2.4 s
    evidence, _ = flag_evidence(session([0.0] * n, covered=covered), AwayConfig())
    segments, _ = segment_session(session([0.0] * n, covered=covered), ExamPolicy(), AwayConfig(), duration_ms=n * STEP)
    assert [(s.kind, s.start_ms, s.end_ms) for s in segments] == [(FlagKind.CAMERA_BLOCKED, 10_000, 12_400)]
    assert (evidence[FlagKind.NO_FACE][50:62] == 1).all()  # too short for a no_face flag (3 s) on its own


def test_the_exam_policy_sets_the_looking_away_tolerances() -> None:
    yaw = [0.0] * 100 + [35.0] * 20 + [0.0] * 100  # 4 s at 35 degrees
    signals = session(yaw)
    strict, _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=len(yaw) * STEP)
    relaxed_policy = ExamPolicy.from_json({"looking_away": {"yaw_deg": 40}})
    relaxed, _ = segment_session(signals, relaxed_policy, AwayConfig(), duration_ms=len(yaw) * STEP)
    assert [s.kind for s in strict] == [FlagKind.LOOKING_AWAY] and relaxed == []
    assert relaxed_policy.to_json()["looking_away"] == {"yaw_deg": 40}
    assert ExamPolicy.from_json(relaxed_policy.to_json()) == relaxed_policy


@pytest.mark.parametrize("bad", [{"yaw_deg": 0}, {"roll_deg": 10}])
def test_bad_tolerances_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="looking_away"):
        ExamPolicy.from_json({"looking_away": bad})


def test_a_looking_away_flag_says_why() -> None:
    yaw = [5.0] * 150 + [40.0] * 20 + [5.0] * 150
    (flag,), _ = segment_session(session(yaw), ExamPolicy(), AwayConfig(), duration_ms=len(yaw) * STEP)
    why = flag.details
    assert why["driver"] == "head yaw" and why["reference"]["calibrated"] is True
    assert why["reference"]["yaw_deg"] == pytest.approx(5, abs=0.5)
    assert why["tolerances"]["yaw_deg"] == pytest.approx(AwayConfig().yaw_deg)
    assert why["peak_score"] == pytest.approx(35 / 25, abs=0.05)
    assert 1 <= len(why["trace"]) <= 48 and all(point[1] >= 1.0 for point in why["trace"])
    assert AwayTolerances().applied_to(AwayConfig()) == AwayConfig()
