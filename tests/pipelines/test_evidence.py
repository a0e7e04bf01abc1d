"""Evidence rules and explanations: a head turned too far to track, the exam's tolerances, why a flag fired."""

from __future__ import annotations

import numpy as np
import pytest

from core.vocabulary import FlagKind
from detectors import AwayConfig, Signals
from pipelines.analysis import segment_session
from pipelines.evidence import TurnedAway, UnreadableHead, flag_evidence, turned_away_losses, unreadable_heads
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
        ([1, 1] + [0] * 7, [0.2, 1.2] + [NAN] * 7, [0, 0, 1, 1, 1, 1, 1, 0, 0]),  # at most max_ms (1 s here)
        ([1, 1, 0, 1, 0], [1.2, 0.1, NAN, 0.1, NAN], [0, 0, 0, 0, 0]),  # the turn ended before the loss
        ([1, 0, 1, 0, 0], [0.2, NAN, 1.2, NAN, NAN], [0, 0, 0, 1, 1]),  # a face flickering as it turns
        ([0, 0, 1, 0, 0], [NAN, NAN, 1.2, NAN, NAN], [0, 0, 0, 0, 0]),  # one turned detection in an empty scene
        ([1] + [0] * 6 + [1, 0], [0.2] + [NAN] * 6 + [1.2, NAN], [0] * 9),  # ... also long after the last face
    ],
)
def test_a_face_lost_while_turning_away_is_looking_away(
    faces: list[int], score: list[float], expected: list[int]
) -> None:
    ts = np.arange(len(faces), dtype=np.int64) * STEP
    rule = TurnedAway(within_ms=1000, from_score=0.7, max_ms=1000)
    lost = turned_away_losses(ts, np.array(faces, float), np.array(score), rule)
    assert lost.astype(int).tolist() == expected


@pytest.mark.parametrize(
    ("faces", "groups", "expected"),
    [
        ([1, 1, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 1, 1, 0]),  # turned back to where it was: a head turn
        ([1, 1, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]),  # came back elsewhere: a cut, a move, someone left
        ([1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 1]),  # not back yet: a head turn, for max_ms
        ([1, 1, 0, 0, 1], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0]),  # the turn began in a group of its own, back in it
    ],
)
def test_a_face_that_comes_back_elsewhere_was_not_a_head_turn(
    faces: list[int], groups: list[int], expected: list[int]
) -> None:
    ts = np.arange(len(faces), dtype=np.int64) * STEP
    score = [0.2, 1.2, NAN, NAN, 0.2]
    rule = TurnedAway(within_ms=1000, from_score=0.7, max_ms=1000)
    lost = turned_away_losses(ts, np.array(faces, float), np.array(score), rule, np.array(groups, dtype=np.int64))
    assert lost.astype(int).tolist() == expected


def turned_then_back(back_at: tuple[float, float, float]) -> Signals:
    """30 s of the candidate at the screen at (320, 240), 150 px; a head read as turned on two frames; 3.6 s without
    a face; then a face at ``back_at`` (x, y, size) looking at the screen."""
    yaw = [5.0] * 150 + [40.0] * 2 + [NAN] * 18 + [5.0] * 100
    faces = [1] * 152 + [0] * 18 + [1] * 100
    signals = session(yaw, faces=faces)
    x, y, size = np.full(len(yaw), 320.0), np.full(len(yaw), 240.0), np.full(len(yaw), 150.0)
    x[170:], y[170:], size[170:] = back_at
    face = np.asarray(faces) == 1
    signals.columns.update({
        "gaze_face_x_px": np.where(face, x, np.nan),
        "gaze_face_y_px": np.where(face, y, np.nan),
        "gaze_face_size_px": np.where(face, size, np.nan),
    })  # fmt: skip
    return signals


@pytest.mark.parametrize(
    ("back_at", "expected"),
    [
        ((320.0, 240.0, 150.0), (FlagKind.LOOKING_AWAY, 30_000, 34_000)),  # the head turned back: looking away
        ((360.0, 250.0, 100.0), (FlagKind.NO_FACE, 30_400, 34_000)),  # a face leaning back, another group: no face
    ],
)
def test_a_face_lost_and_found_elsewhere_is_an_empty_seat(
    back_at: tuple[float, float, float], expected: tuple[FlagKind, int, int]
) -> None:
    signals = turned_then_back(back_at)
    segments, _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=len(signals) * STEP)
    assert [(s.kind, s.start_ms, s.end_ms) for s in segments] == [expected]


@pytest.mark.parametrize(
    ("turned", "expected"),
    [("head", (FlagKind.LOOKING_AWAY, 20_000, 25_000)), ("eyes", (FlagKind.NO_FACE, 21_000, 25_000))],
)
def test_only_a_head_turned_away_explains_a_face_lost(turned: str, expected: tuple[FlagKind, int, int]) -> None:
    """A head turned far makes the detectors lose the face; eyes to the side do not. A candidate who glances
    aside and is gone the next frame has left the seat."""
    yaw = [0.0] * 100 + [40.0 if turned == "head" else 0.0] * 5 + [NAN] * 20 + [0.0] * 100
    signals = session(yaw, faces=[1] * 105 + [0] * 20 + [1] * 100)
    gaze = np.zeros(len(yaw))
    gaze[100:105] = 0.0 if turned == "head" else 0.3  # three tolerances to the side
    gaze[105:125] = np.nan
    signals.columns["eye_gaze_h"] = gaze
    segments, _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=len(yaw) * STEP)
    assert [(s.kind, s.start_ms, s.end_ms) for s in segments] == [expected]


@pytest.mark.parametrize(
    ("faces", "read", "readable_size", "expected"),
    [
        ([1] * 12, [1] * 4 + [0] * 5 + [1] * 3, [1] * 12, [0] * 4 + [1] * 5 + [0] * 3),  # 0.8 s unread: away
        ([1] * 12, [1] * 5 + [0] * 4 + [1] * 3, [1] * 12, [0] * 12),  # 0.6 s: a frame or two lost, unknown
        ([1] * 12, [1] * 4 + [0] * 5 + [1] * 3, [1] * 4 + [0] * 5 + [1] * 3, [0] * 12),  # too small to read
        ([1] * 4 + [2] * 5 + [1] * 3, [1] * 4 + [0] * 5 + [1] * 3, [1] * 12, [0] * 12),  # two faces: not this rule
        ([1] * 4 + [0] * 5 + [1] * 3, [1] * 4 + [0] * 5 + [1] * 3, [1] * 12, [0] * 12),  # no face: not this rule
        ([1] * 12, [1] * 2 + [0] * 10, [1] * 12, [0] * 12),  # a head read on 2 of 12 frames: the detectors, not them
    ],
)
def test_a_lone_face_whose_head_cannot_be_read_is_looking_away(
    faces: list[int], read: list[int], readable_size: list[int], expected: list[int]
) -> None:
    ts = np.arange(len(faces), dtype=np.int64) * STEP
    rule = UnreadableHead(min_ms=800, min_read_share=0.5)
    one_face = np.array(faces) == 1
    away = unreadable_heads(ts, one_face, np.array(read, bool), np.array(readable_size, bool), rule)
    assert away.astype(int).tolist() == expected


def test_a_head_tilted_too_far_to_read_raises_looking_away_not_nothing() -> None:
    """A candidate tilting their head far back in sunglasses: the face is still found, but no model reads its
    pose. Unknown would hide it; it is a look away, and the flag says the head could not be read."""
    yaw = [0.0] * 100 + [NAN] * 15 + [0.0] * 100
    n = len(yaw)
    signals = with_face_at(session(yaw), size_px=np.full(n, 120.0))  # a fifth of a 640x480 frame's width
    (flag,), _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=n * STEP)
    assert (flag.kind, flag.start_ms, flag.end_ms) == (FlagKind.LOOKING_AWAY, 20_000, 23_000)
    assert flag.details["driver"] == "head unreadable" and flag.details["head_unreadable_frames"] == 15
    signals.columns["too_dark"][100:115] = 1.0
    assert segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=n * STEP)[0] == []


def test_a_head_too_small_for_the_frame_to_be_read_is_not_looking_away() -> None:
    """A candidate leaning back from an HD webcam: 90 px is a face the short-range model misses in a 1280x720
    frame (a fourteenth of its width) and finds in a 640x480 one, so only the latter's unread head is away."""
    yaw = [0.0] * 100 + [NAN] * 15 + [0.0] * 100
    n = len(yaw)
    small = np.where(np.isnan(yaw), 90.0, 200.0)
    hd = with_face_at(session(yaw), size_px=small, width=1280, height=720)
    assert segment_session(hd, ExamPolicy(), AwayConfig(), duration_ms=n * STEP)[0] == []
    vga = with_face_at(session(yaw), size_px=small * 1.5)
    assert [s.kind for s in segment_session(vga, ExamPolicy(), AwayConfig(), duration_ms=n * STEP)[0]] == [
        FlagKind.LOOKING_AWAY
    ]


@pytest.mark.parametrize(("far_px", "flagged"), [(22.0, True), (60.0, False)])
def test_a_tiny_face_alone_in_view_is_not_someone_at_the_desk(far_px: float, flagged: bool) -> None:
    """The candidate leaves for 4 s; on half of that the tiled pass finds a 22 px "face" in the empty office (a
    head that small is 3 m from the webcam). The seat is empty all along. A candidate leaning back to 60 px (0.09
    of the frame, as a camera farther back shows them) is still there."""
    yaw = [0.0] * 100 + [NAN] * 20 + [0.0] * 100
    faces = [1] * 100 + [0] * 5 + [1] * 10 + [0] * 5 + [1] * 100
    size = np.array([200.0] * 100 + [far_px] * 20 + [200.0] * 100)
    signals = with_face_at(session(yaw, faces=faces), size_px=size)
    segments, _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=len(yaw) * STEP)
    assert [(s.kind, s.start_ms, s.end_ms) for s in segments] == (
        [(FlagKind.NO_FACE, 20_000, 24_000)] if flagged else []
    )


@pytest.mark.parametrize("far_px", [None, 12.0])
def test_a_candidate_a_wide_angle_camera_shows_small_is_at_the_desk(far_px: float | None) -> None:
    """A wide-angle webcam shows the candidate 28 px across (0.044 of the frame) all session: that is where they
    sit, not an empty seat. They leave for 4 s, and on half of that a 12 px "face" is found in the empty room:
    that is still an empty seat."""
    yaw = [0.0] * 100 + [NAN] * 20 + [0.0] * 100
    faces = [1] * 100 + [0] * 20 + [1] * 100
    size = np.full(len(yaw), 28.0)
    if far_px is not None:
        faces[105:115] = [1] * 10
        size[105:115] = far_px
    signals = with_face_at(session(yaw, faces=faces), size_px=size)
    segments, _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=len(yaw) * STEP)
    assert [(s.kind, s.start_ms, s.end_ms) for s in segments] == [(FlagKind.NO_FACE, 20_000, 24_000)]


def with_face_at(signals: Signals, size_px: np.ndarray, width: int = 640, height: int = 480) -> Signals:
    """``signals`` with the largest face of ``size_px`` in the middle of a ``width`` x ``height`` frame."""
    n = len(signals)
    signals.columns.update({
        "face_size_px": size_px, "face_x_px": np.full(n, width / 2), "face_y_px": np.full(n, height / 2),
        "face_cx": np.full(n, 0.5), "face_cy": np.full(n, 0.5),
    })  # fmt: skip
    return signals


def test_a_picture_left_alone_is_not_an_unreadable_head() -> None:
    """The candidate's head goes unread on their last two frames, then only the framed picture (large enough to
    read) is left: the seat is empty, and the picture's frames do not lengthen that run into a look away."""
    signals = framed_then_left(30, (500.0, 150.0, 100.0), 30, (501.0, 149.0, 101.0))
    signals.columns["head_yaw_deg"][:30] = 0.0
    signals.columns["head_pitch_deg"][:30] = 0.0
    signals.columns["head_yaw_deg"][28:30] = np.nan
    signals.columns["face_cx"] = signals["face_x_px"] / 640
    signals.columns["face_cy"] = signals["face_y_px"] / 480
    evidence, _ = flag_evidence(signals, AwayConfig(), unreadable=UnreadableHead(min_ms=400, min_read_share=0.3))
    assert not np.any(evidence[FlagKind.LOOKING_AWAY] == 1.0)


def test_turning_out_of_view_raises_looking_away_not_no_face() -> None:
    yaw = [0.0] * 100 + [10.0, 20.0, 30.0, 40.0] + [NAN] * 15 + [0.0] * 100
    faces = [1] * 104 + [0] * 15 + [1] * 100
    segments, _ = segment_session(session(yaw, faces), ExamPolicy(), AwayConfig(), duration_ms=len(yaw) * STEP)
    kinds = {s.kind for s in segments}
    assert kinds == {FlagKind.LOOKING_AWAY}


def test_two_seconds_of_a_covered_lens_is_a_flag() -> None:
    n = 150
    covered = [0] * 50 + [1] * 12 + [0] * (n - 62)  # 2.4 s, and no face through it
    faces = [1 - c for c in covered]
    yaw = [NAN if c else 0.0 for c in covered]
    evidence, _ = flag_evidence(session(yaw, faces, covered), AwayConfig())
    segments, _ = segment_session(session(yaw, faces, covered), ExamPolicy(), AwayConfig(), duration_ms=n * STEP)
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


def cut_from_a_cartoon(look_frames: int) -> Signals:
    """30 s of the candidate at the screen, 3 s of an empty scene, 1 s of a cartoon elsewhere in the frame read as a
    head turned away, one empty frame (a cut), then the candidate again, who after 0.6 s looks aside
    (``look_frames`` frames at 35 degrees, 1.2 tolerances) and back."""
    yaw = [5.0] * 150 + [NAN] * 15 + [40.0] * 5 + [NAN] + [5.0] * 3 + [35.0] * look_frames + [5.0] * 100
    faces = [1] * 150 + [0] * 15 + [1] * 5 + [0] + [1] * (3 + look_frames + 100)
    signals = session(yaw, faces=faces)
    n = len(yaw)
    cartoon = np.zeros(n, bool)
    cartoon[165:170] = True
    face = np.asarray(faces) == 1
    signals.columns.update({
        "gaze_face_x_px": np.where(face, np.where(cartoon, 100.0, 320.0), np.nan),
        "gaze_face_y_px": np.where(face, np.where(cartoon, 300.0, 240.0), np.nan),
        "gaze_face_size_px": np.where(face, np.where(cartoon, 80.0, 150.0), np.nan),
    })  # fmt: skip
    return signals


def test_a_look_after_a_cut_is_not_joined_to_a_turned_face_before_it() -> None:
    """The cartoon's turned head (1 s) and the candidate's glance (0.8 s) are each too short to flag, 1.4 s
    apart. They were judged against different references, so they are not one event."""
    signals = cut_from_a_cartoon(look_frames=4)
    evidence, trace = flag_evidence(signals, AwayConfig())
    assert trace is not None and trace.calibration.group[167] != trace.calibration.group[175]
    away = evidence[FlagKind.LOOKING_AWAY]
    assert np.all(away[165:170] >= 0.5) and np.all(away[174:178] >= 0.5)
    segments, _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=len(signals) * STEP)
    assert [s for s in segments if s.kind is FlagKind.LOOKING_AWAY] == []


def test_a_look_after_a_cut_long_enough_is_flagged_from_where_it_starts() -> None:
    signals = cut_from_a_cartoon(look_frames=12)
    segments, _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=len(signals) * STEP)
    (flag,) = [s for s in segments if s.kind is FlagKind.LOOKING_AWAY]
    assert (flag.start_ms, flag.end_ms) == (174 * STEP, 186 * STEP)
    assert flag.details["reference"]["calibrated"] is True


def with_second_face(
    n: int, *, candidate_moves: bool, second: tuple[float, float, float] | None, wobble: float = 0.0
) -> Signals:
    """A candidate (largest, tracked face) and a second face at ``second`` (x, y, size in px), wobbling by
    ``wobble`` px."""
    rng = np.random.default_rng(3)
    t = np.arange(n)
    sway = 20 * np.sin(t / 4.0) if candidate_moves else np.zeros(n)
    cols = {
        "face_count": np.full(n, 2.0 if second else 1.0),
        "covered": np.zeros(n),
        "too_dark": np.zeros(n),
        "head_yaw_deg": np.zeros(n),
        "head_pitch_deg": np.zeros(n),
        "eye_gaze_h": np.full(n, np.nan),
        "eye_gaze_v": np.full(n, np.nan),
        "gaze_face_x_px": 290 + sway,
        "gaze_face_y_px": np.full(n, 240.0),
        "face_x_px": 290 + sway,
        "face_y_px": np.full(n, 240.0),
        "face_size_px": np.full(n, 200.0),
        "second_face_x_px": np.full(n, np.nan),
        "second_face_y_px": np.full(n, np.nan),
        "second_face_size_px": np.full(n, np.nan),
    }
    if second is not None:
        cols["second_face_x_px"] = second[0] + wobble * rng.normal(0, 1, n)
        cols["second_face_y_px"] = np.full(n, second[1])
        cols["second_face_size_px"] = np.full(n, second[2])
    return Signals(np.arange(n, dtype=np.int64) * STEP, cols)


@pytest.mark.parametrize(
    ("candidate_moves", "second", "wobble", "multiple"),
    [
        (True, (540.0, 120.0, 50.0), 0.0, False),  # a poster behind a live candidate
        (True, (540.0, 120.0, 50.0), 6.0, True),  # someone sitting behind them: people are never that still
        (True, (480.0, 240.0, 190.0), 0.0, True),  # as large as the candidate: beside them, not a picture
        (False, (540.0, 120.0, 50.0), 0.0, True),  # nothing moves (a spliced still): cannot tell, still two
    ],
)
def test_a_picture_on_the_wall_is_not_a_second_person(
    candidate_moves: bool, second: tuple[float, float, float], wobble: float, multiple: bool
) -> None:
    n = 100
    segments, _ = segment_session(
        with_second_face(n, candidate_moves=candidate_moves, second=second, wobble=wobble),
        ExamPolicy(), AwayConfig(), duration_ms=n * STEP,
    )  # fmt: skip
    assert (FlagKind.MULTIPLE_FACES in {s.kind for s in segments}) is multiple


def test_a_small_picture_whose_detections_jitter_is_still_a_picture() -> None:
    """A picture 18 px across (the camera farther back) is found again at boxes a model pixel or two apart: in
    ``benchmarks/capture.py`` its centre moved 2.7 px, 0.15 of its size, and it was a second person there."""
    n = 100
    signals = with_second_face(n, candidate_moves=True, second=(440.0, 140.0, 18.0))
    jumps = np.where(np.arange(n) % 20 < 10, 0.0, 3.0)  # two detections of the same picture, in turn
    signals = Signals(signals.timestamps_ms, dict(signals.columns) | {"second_face_y_px": 140.0 + jumps})
    evidence, _ = flag_evidence(signals, AwayConfig())
    assert (evidence[FlagKind.MULTIPLE_FACES] == 0).all()
    someone = Signals(signals.timestamps_ms, dict(signals.columns) | {"second_face_y_px": 140.0 + 3 * jumps})
    evidence, _ = flag_evidence(someone, AwayConfig())
    assert (evidence[FlagKind.MULTIPLE_FACES] == 1).all(), "a small face that moves 9 px is a person"


def test_the_picture_alone_is_an_empty_seat() -> None:
    first = with_second_face(60, candidate_moves=True, second=(540.0, 120.0, 50.0))
    n = 40  # the candidate leaves: only the poster's face is counted
    left = {c: np.full(n, np.nan) for c in first.columns}
    left |= {"face_count": np.ones(n), "covered": np.zeros(n), "too_dark": np.zeros(n)}
    left |= {"face_x_px": np.full(n, 540.0), "face_y_px": np.full(n, 120.0), "face_size_px": np.full(n, 50.0)}
    both = Signals(
        np.arange(100, dtype=np.int64) * STEP, {c: np.concatenate([first[c], left[c]]) for c in first.columns}
    )
    evidence, _ = flag_evidence(both, AwayConfig())
    assert (evidence[FlagKind.NO_FACE][60:] == 1).all()
    assert (evidence[FlagKind.MULTIPLE_FACES][10:50] == 0).all()


def test_a_picture_seen_while_the_candidate_moved_stays_a_picture_while_they_sit_still() -> None:
    moving = with_second_face(60, candidate_moves=True, second=(540.0, 120.0, 50.0))
    still = with_second_face(100, candidate_moves=False, second=(540.0, 120.0, 50.0))
    visitor = with_second_face(40, candidate_moves=False, second=(120.0, 200.0, 150.0))  # someone else, elsewhere
    parts = (moving, still, visitor)
    joined = Signals(
        np.arange(200, dtype=np.int64) * STEP, {c: np.concatenate([p[c] for p in parts]) for c in moving.columns}
    )
    evidence, _ = flag_evidence(joined, AwayConfig())
    assert (evidence[FlagKind.MULTIPLE_FACES][10:160] == 0).all(), "the same picture, at its place and size"
    assert (evidence[FlagKind.MULTIPLE_FACES][160:] == 1).all(), "a face elsewhere is still a second person"


def test_a_very_dark_picture_with_a_face_is_not_a_covered_lens() -> None:
    """The quality check reads a very dark frame as covered; a face found on it says otherwise."""
    n = 60
    dark = session([0.0] * n, faces=[1] * n, covered=[1] * n)
    evidence, _ = flag_evidence(dark, AwayConfig())
    assert (evidence[FlagKind.CAMERA_BLOCKED] == 0).all() and (evidence[FlagKind.NO_FACE] == 0).all()
    segments, _ = segment_session(dark, ExamPolicy(), AwayConfig(), duration_ms=n * STEP)
    assert segments == []


def test_two_faces_seen_in_a_dark_room_are_a_second_person() -> None:
    """Darkness hides faces, it does not make them: a dark frame is unknown for multiple_faces only where it
    shows fewer than two (a side-by-side of two dim stills read as too dark was never flagged)."""
    n = 30
    dim = session([0.0] * n, faces=[2] * (n // 2) + [1] * (n - n // 2))
    dim.columns["too_dark"][:] = 1.0
    evidence, _ = flag_evidence(dim, AwayConfig())
    assert (evidence[FlagKind.MULTIPLE_FACES][: n // 2] == 1).all()
    assert np.isnan(evidence[FlagKind.MULTIPLE_FACES][n // 2 :]).all(), "one face in the dark may hide a second"
    assert np.isnan(evidence[FlagKind.NO_FACE]).all()
    segments, _ = segment_session(dim, ExamPolicy(), AwayConfig(), duration_ms=n * STEP)
    assert [(s.kind, s.start_ms) for s in segments] == [(FlagKind.MULTIPLE_FACES, 0)]


def framed_then_left(
    n: int, picture: tuple[float, float, float], framed_frames: int, alone: tuple[float, float, float]
) -> Signals:
    """A candidate in front of a framed picture (not counted, placed at ``picture`` on ``framed_frames`` of the
    first ``n`` frames), who then leaves: a lone face at ``alone`` (x, y, size) for ``n`` frames."""
    seated = with_second_face(n, candidate_moves=False, second=None)
    cols = {c: np.concatenate([seated[c], np.full(n, np.nan)]) for c in seated.columns}
    cols |= {"face_count": np.ones(2 * n), "covered": np.zeros(2 * n), "too_dark": np.zeros(2 * n)}
    for k, c in enumerate(("face_x_px", "face_y_px", "face_size_px")):
        cols[c][n:] = alone[k]
    for k, c in enumerate(("picture_face_x_px", "picture_face_y_px", "picture_face_size_px")):
        cols[c] = np.full(2 * n, np.nan)
        cols[c][:framed_frames] = picture[k]
    return Signals(np.arange(2 * n, dtype=np.int64) * STEP, cols)


@pytest.mark.parametrize(
    ("framed_frames", "alone", "empty"),
    [
        (30, (541.0, 119.0, 51.0), True),  # the framed picture, left alone in view
        (30, (300.0, 240.0, 190.0), False),  # a candidate back in the seat
        (30, (540.0, 120.0, 80.0), False),  # someone at that spot, but not the picture's size
        (2, (541.0, 119.0, 51.0), False),  # framed on two frames only: not shown to hang there
    ],
)
def test_a_framed_picture_left_alone_is_an_empty_seat(
    framed_frames: int, alone: tuple[float, float, float], empty: bool
) -> None:
    signals = framed_then_left(30, (540.0, 120.0, 50.0), framed_frames, alone)
    evidence, _ = flag_evidence(signals, AwayConfig())
    assert (evidence[FlagKind.NO_FACE][:30] == 0).all()
    assert (evidence[FlagKind.NO_FACE][30:] == (1 if empty else 0)).all()
    segments, _ = segment_session(signals, ExamPolicy(), AwayConfig(), duration_ms=60 * STEP)
    assert (FlagKind.NO_FACE in {s.kind for s in segments}) is empty
