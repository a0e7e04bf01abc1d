"""The segmenter: tables of evidence in, segments out, and properties that hold for any input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.vocabulary import FlagKind
from pipelines.segments import ExamPolicy, KindPolicy, Segment, risk_score, segment_all, segment_kind

N = float("nan")
FRAME_MS = 200  # 5 sampled frames per second


def run(values: list[float], policy: KindPolicy, kind: FlagKind = FlagKind.NO_FACE) -> list[tuple[int, int]]:
    ts = np.arange(len(values), dtype=np.int64) * FRAME_MS
    found = segment_kind(kind, ts, np.array(values, dtype=np.float64), policy, video_end_ms=len(values) * FRAME_MS)
    return [(s.start_ms, s.end_ms) for s in found]


LOOSE = KindPolicy(min_duration_ms=0, merge_gap_ms=0, max_unknown_ms=0)


@pytest.mark.parametrize(
    ("name", "values", "policy", "expected"),
    [
        ("nothing", [0, 0, 0, 0], LOOSE, []),
        ("one frame", [0, 1, 0, 0], LOOSE, [(200, 400)]),
        ("until the end", [0, 0, 1, 1], LOOSE, [(400, 800)]),
        ("from the start", [1, 1, 0, 0], LOOSE, [(0, 400)]),
        ("hysteresis holds between exit and enter", [0, 0.6, 0.4, 0.4, 0.6, 0], LOOSE, [(200, 1000)]),
        ("below exit closes", [0, 0.6, 0.2, 0.6, 0], LOOSE, [(200, 400), (600, 800)]),
        ("between thresholds never opens", [0.4, 0.45, 0.4], LOOSE, []),
        ("exactly enter opens", [0.5, 0], LOOSE, [(0, 200)]),
        (
            "min duration drops short runs",
            [1, 0, 0, 1, 1, 1, 1, 1, 0],
            KindPolicy(min_duration_ms=600, merge_gap_ms=0),
            [(600, 1600)],
        ),
        (
            "min duration keeps exactly long enough",
            [1, 1, 1, 0],
            KindPolicy(min_duration_ms=600, merge_gap_ms=0),
            [(0, 600)],
        ),
        (
            "gap merge joins close runs",
            [1, 1, 0, 1, 1, 0, 0, 0, 1],
            KindPolicy(min_duration_ms=0, merge_gap_ms=200),
            [(0, 1000), (1600, 1800)],
        ),
        (
            "gap merge then min duration",
            [1, 0, 1, 0, 0, 0, 0, 1],
            KindPolicy(min_duration_ms=500, merge_gap_ms=200),
            [(0, 600)],
        ),
        (
            "unknown frames are bridged briefly",
            [1, N, N, 1, 0],
            KindPolicy(min_duration_ms=0, merge_gap_ms=0, max_unknown_ms=400),
            [(0, 800)],
        ),
        (
            "long unknown closes the segment",
            [1, N, N, N, N, 1, 0],
            KindPolicy(min_duration_ms=0, merge_gap_ms=0, max_unknown_ms=400),
            [(0, 200), (1000, 1200)],
        ),
        ("unknown never opens", [N, N, N], LOOSE, []),
        ("disabled kind", [1, 1, 1], KindPolicy(enabled=False), []),
    ],
)
def test_segment_table(name: str, values: list[float], policy: KindPolicy, expected: list[tuple[int, int]]) -> None:
    assert run(values, policy) == expected, name


def run_judged(values: list[float], references: list[int], policy: KindPolicy) -> list[tuple[int, int]]:
    ts = np.arange(len(values), dtype=np.int64) * FRAME_MS
    found = segment_kind(
        FlagKind.LOOKING_AWAY,
        ts,
        np.array(values, dtype=np.float64),
        policy,
        video_end_ms=len(values) * FRAME_MS,
        references=np.array(references, dtype=np.int64),
    )
    return [(s.start_ms, s.end_ms) for s in found]


@pytest.mark.parametrize(
    ("name", "values", "references", "policy", "expected"),
    [
        ("one reference: as without", [0, 0.6, 0.4, 0.4, 0], [0] * 5, LOOSE, [(200, 800)]),
        ("a change closes a held run", [0, 0.6, 0.4, 0.4, 0], [0, 0, 0, 1, 1], LOOSE, [(200, 600)]),
        ("the new reference must reach enter", [0.6, 0.6, 0.4, 0.4], [0, 0, 1, 1], LOOSE, [(0, 400)]),
        ("and may at once", [0.6, 0.6, 0.6, 0.6], [0, 0, 1, 1], LOOSE, [(0, 400), (400, 800)]),
        ("a change opens nothing", [0.4, 0.4, 0.4, 0.4], [0, 0, 1, 1], LOOSE, []),
        (
            "unknown frames do not carry a run into the next",
            [1, N, 0.4, 0.4],
            [0, 0, 1, 1],
            KindPolicy(min_duration_ms=0, merge_gap_ms=0, max_unknown_ms=400),
            [(0, 200)],
        ),
        (
            "no merge across a change",
            [1, 1, 0, 1, 1],
            [0, 0, 0, 1, 1],
            KindPolicy(min_duration_ms=0, merge_gap_ms=400),
            [(0, 400), (600, 1000)],
        ),
        (
            "nor where the change lies inside the gap",
            [1, 1, 0, 0, 1],
            [0, 0, 0, 1, 1],
            KindPolicy(min_duration_ms=0, merge_gap_ms=400),
            [(0, 400), (800, 1000)],
        ),
        (
            "merge within one",
            [1, 1, 0, 1, 1],
            [0, 0, 0, 0, 0],
            KindPolicy(min_duration_ms=0, merge_gap_ms=400),
            [(0, 1000)],
        ),
        (
            "two short runs stay short",
            [1, 1, 0, 1, 1],
            [0, 0, 1, 1, 1],
            KindPolicy(min_duration_ms=600, merge_gap_ms=400),
            [],
        ),
        (
            "nor where another reference came between",
            [1, 1, 0, 1, 1],
            [0, 0, 1, 0, 0],
            KindPolicy(min_duration_ms=0, merge_gap_ms=400),
            [(0, 400), (600, 1000)],
        ),
    ],
)
def test_a_segment_never_spans_two_references(
    name: str, values: list[float], references: list[int], policy: KindPolicy, expected: list[tuple[int, int]]
) -> None:
    assert run_judged(values, references, policy) == expected, name


def test_references_must_match_the_frames() -> None:
    with pytest.raises(ValueError, match="one reference per frame"):
        segment_kind(
            FlagKind.LOOKING_AWAY,
            np.arange(3, dtype=np.int64),
            np.ones(3),
            LOOSE,
            video_end_ms=1000,
            references=np.zeros(2, dtype=np.int64),
        )


def test_score_and_peak() -> None:
    ts = np.arange(6, dtype=np.int64) * FRAME_MS
    ev = np.array([0, 0.6, 0.9, N, 0.7, 0])
    (seg,) = segment_kind(
        FlagKind.LOOKING_AWAY, ts, ev, KindPolicy(min_duration_ms=0, max_unknown_ms=500), video_end_ms=1200
    )
    assert seg == Segment(FlagKind.LOOKING_AWAY, 200, 1000, round((0.6 + 0.9 + 0.7) / 3, 4), 400)


def test_segment_end_is_clipped_to_the_video() -> None:
    ts = np.array([0, 200, 400], dtype=np.int64)
    (seg,) = segment_kind(FlagKind.NO_FACE, ts, np.ones(3), LOOSE, video_end_ms=500)
    assert seg.end_ms == 500


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        segment_kind(FlagKind.NO_FACE, np.arange(3, dtype=np.int64), np.ones(4), LOOSE, video_end_ms=1000)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"enter": 0.3, "exit": 0.5}, "exit <= enter"),
        ({"min_duration_ms": -1}, "min_duration_ms must be >= 0"),
        ({"weight": 2.0}, "weight must be within"),
    ],
)
def test_kind_policy_validation(values: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        KindPolicy(**values)  # type: ignore[arg-type]


def test_sensitivity_scales_minimum_durations() -> None:
    strict, eager = ExamPolicy(sensitivity=0.5), ExamPolicy(sensitivity=2.0)
    base = ExamPolicy().for_kind(FlagKind.NO_FACE).min_duration_ms
    assert strict.for_kind(FlagKind.NO_FACE).min_duration_ms == 2 * base
    assert eager.for_kind(FlagKind.NO_FACE).min_duration_ms == base // 2
    values = [0] * 5 + [1] * 10 + [0] * 5  # a 2 s episode
    ts = np.arange(len(values), dtype=np.int64) * FRAME_MS
    evidence = {FlagKind.NO_FACE: np.array(values, dtype=np.float64)}
    assert segment_all(ts, evidence, ExamPolicy(), video_end_ms=4000) == []  # default needs 3 s
    assert len(segment_all(ts, evidence, eager, video_end_ms=4000)) == 1


def test_policy_round_trips_through_json_and_refuses_unknowns() -> None:
    policy = ExamPolicy(sensitivity=1.5, kinds={FlagKind.LOOKING_AWAY: KindPolicy(enabled=False)})
    assert ExamPolicy.from_json(policy.to_json()) == policy
    assert ExamPolicy.from_json(None) == ExamPolicy()
    assert (
        ExamPolicy.from_json({"kinds": {"no_face": {"min_duration_ms": 5000}}}).kinds[FlagKind.NO_FACE].min_duration_ms
        == 5000
    )
    with pytest.raises(ValueError, match="unknown flag kind 'phone'"):
        ExamPolicy.from_json({"kinds": {"phone": {}}})
    with pytest.raises(ValueError, match="policy for no_face"):
        ExamPolicy.from_json({"kinds": {"no_face": {"threshold": 1}}})
    with pytest.raises(ValueError, match="unknown policy fields"):
        ExamPolicy.from_json({"strictness": 3})


def test_risk_score_orders_sessions() -> None:
    policy = ExamPolicy()
    one = [Segment(FlagKind.LOOKING_AWAY, 0, 3000, 0.8, 100)]
    two = [*one, Segment(FlagKind.MULTIPLE_FACES, 5000, 20000, 0.9, 6000)]
    assert risk_score([], policy, video_end_ms=60_000) == 0.0
    assert 0 < risk_score(one, policy, video_end_ms=60_000) < risk_score(two, policy, video_end_ms=60_000) <= 1


evidence_values = st.one_of(st.floats(0, 1), st.just(float("nan")))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(evidence_values, min_size=0, max_size=120),
    steps=st.lists(st.integers(1, 600), min_size=120, max_size=120),
    enter=st.floats(0.05, 1),
    hysteresis=st.floats(0, 1),
    min_duration=st.integers(0, 3000),
    gap=st.integers(0, 3000),
    unknown=st.integers(0, 3000),
    tail=st.integers(0, 2000),
)
def test_segments_never_overlap_and_stay_inside_the_video(
    values: list[float],
    steps: list[int],
    enter: float,
    hysteresis: float,
    min_duration: int,
    gap: int,
    unknown: int,
    tail: int,
) -> None:
    ts = np.cumsum([0, *steps[: max(0, len(values) - 1)]]).astype(np.int64)[: len(values)]
    video_end = int(ts[-1]) + tail + 1 if len(values) else 1
    policy = KindPolicy(
        enter=enter, exit=enter * hysteresis, min_duration_ms=min_duration, merge_gap_ms=gap, max_unknown_ms=unknown
    )
    segments = segment_kind(FlagKind.NO_FACE, ts, np.array(values, dtype=np.float64), policy, video_end_ms=video_end)
    for seg in segments:
        assert 0 <= seg.start_ms < seg.end_ms <= video_end
        assert seg.duration_ms >= min_duration
        assert 0.0 <= seg.score <= 1.0 and seg.start_ms <= seg.peak_ms < seg.end_ms
    for a, b in itertools.pairwise(segments):
        assert a.end_ms <= b.start_ms, "segments of one kind never overlap"


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(evidence_values, min_size=1, max_size=120),
    changes=st.lists(st.booleans(), min_size=120, max_size=120),
    enter=st.floats(0.05, 1),
    hysteresis=st.floats(0, 1),
    min_duration=st.integers(0, 3000),
    gap=st.integers(0, 3000),
)
def test_references_only_ever_split_or_drop_flags(
    values: list[float], changes: list[bool], enter: float, hysteresis: float, min_duration: int, gap: int
) -> None:
    """A change of reference never adds flagged time, and a segment lies within one reference."""
    references = np.cumsum(changes[: len(values)]).astype(np.int64)
    policy = KindPolicy(
        enter=enter, exit=enter * hysteresis, min_duration_ms=min_duration, merge_gap_ms=gap, max_unknown_ms=400
    )
    alone = run(values, policy, FlagKind.LOOKING_AWAY)
    for start, end in run_judged(values, references.tolist(), policy):
        assert any(a <= start and end <= b for a, b in alone), "a reference added flagged time"
        assert len(set(references[start // FRAME_MS : end // FRAME_MS].tolist())) == 1, "a segment spans two"
