"""Where the reference may change: stretches at discontinuities of the face track, groups of the same place."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import Placement, PlacementRule, placement_groups, stretches
from detectors.placement import person_splits, same_person_groups

N = np.nan
HERE, NEAR, ELSEWHERE, SMALLER = (320, 240, 200), (345, 250, 210), (480, 200, 200), (320, 240, 140)


def placement(*frames: tuple[float, float, float] | None, step_ms: int = 200) -> Placement:
    rows = np.array([f if f is not None else (N, N, N) for f in frames], float)
    return Placement(np.arange(len(frames), dtype=np.int64) * step_ms, rows[:, 0], rows[:, 1], rows[:, 2])


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([HERE] * 4, [0, 0, 0, 0]),
        ([HERE, NEAR, HERE, NEAR], [0, 0, 0, 0]),  # a head moves a little between frames: one stretch
        ([HERE, HERE, ELSEWHERE, ELSEWHERE], [0, 0, 1, 1]),  # a cut: the face jumps
        ([HERE, HERE, SMALLER, SMALLER], [0, 0, 1, 1]),  # the camera zoomed or moved back
        ([HERE, None, None, None, None, None, None, None, None, HERE], [0] * 9 + [1]),  # gone 1.6 s: a break
        ([HERE, None, None, HERE], [0, 0, 0, 0]),  # lost for 0.6 s at the same place: the same stretch
        ([None, None, HERE, HERE], [0, 0, 0, 0]),  # frames before the first face join the first stretch
        ([None, None], [0, 0]),
    ],
)
def test_stretches_start_at_discontinuities(
    frames: list[tuple[float, float, float] | None], expected: list[int]
) -> None:
    assert stretches(placement(*frames), PlacementRule()).tolist() == expected


def test_leaning_back_within_a_second_does_not_split() -> None:
    """A candidate leaning back in a development video: 264 to 198 px (1.33x) in a second."""
    frames = [(320.0, 290.0, 264.0 / 1.33 ** (k / 5)) for k in range(6)] + [(320.0, 300.0, 198.0)] * 4
    assert set(stretches(placement(*frames), PlacementRule()).tolist()) == {0}


def test_continuous_movement_never_splits() -> None:
    """Leaning in over notes: 120 px down and 40 % bigger, in small steps."""
    frames = [(320.0, 240.0 + 10 * k, 200.0 * 1.03**k) for k in range(12)]
    assert set(stretches(placement(*frames), PlacementRule()).tolist()) == {0}


def test_a_tracker_sliding_onto_a_new_face_after_a_cut_starts_a_stretch() -> None:
    """Across a cut the face tracker slides onto the new face over a few frames, each step under the jump (the
    sizes of a camera move in the development sessions): within a second the face is 1.6x smaller."""
    sizes = [341.0, 341.0, 341.0, 313.0, 279.0, 248.0, 223.0, 212.0, 212.0, 212.0]  # 1.53x from 0.2 s to 1.2 s
    frames = [(325.0, 205.0 - (0 if k < 7 else 50), size) for k, size in enumerate(sizes)]
    assert stretches(placement(*frames), PlacementRule()).tolist() == [0] * 6 + [1] * 4
    frame_to_frame = PlacementRule(step_ms=0)
    assert set(stretches(placement(*frames), frame_to_frame).tolist()) == {0}


def test_stretches_at_the_same_place_form_one_group() -> None:
    p = placement(*([HERE] * 3 + [ELSEWHERE] * 3 + [NEAR] * 3))
    ids = stretches(p, PlacementRule())
    assert ids.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert placement_groups(p, ids, PlacementRule()).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("break_ms", -1),
        ("step_ms", -1),
        ("jump_face_sizes", 0.0),
        ("jump_scale", 1.0),
        ("step_scale", 1.0),
        ("same_place_scale", 0.9),
    ],
)
def test_rule_validation(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        PlacementRule(**{field: value})  # type: ignore[arg-type]


def test_two_people_framed_alike_are_calibrated_apart() -> None:
    """A swap in the same chair (or two stills cut to one size): one placement, two people, two groups."""
    p = placement(*([HERE] * 3 + [None] * 9 + [HERE] * 3 + [None] * 9 + [HERE] * 3))
    ids = stretches(p, PlacementRule())
    assert len(set(ids.tolist())) == 3  # gone 1.8 s twice: three stretches
    groups = placement_groups(p, ids, PlacementRule())
    assert set(groups.tolist()) == {0}
    a, b = np.zeros(128), np.full(128, 0.1)  # 1.13 apart: different people
    faces = np.full((len(ids), 128), np.nan)
    faces[0], faces[12], faces[24] = a, b, a + 0.001
    assert same_person_groups(groups, ids, faces, 0.6).tolist() == [0] * 12 + [1] * 12 + [0] * 3


def test_a_person_change_the_tracker_slid_across_splits_the_stretch_at_the_cut() -> None:
    """One unbroken track (the tracker slid from one candidate to the next, framed alike); the descriptors before
    and after are 1.13 apart, different people. The stretch splits at the frame the face moved most."""
    frames = [HERE] * 6 + [NEAR] * 6
    p = placement(*frames)
    ids = stretches(p, PlacementRule())
    assert set(ids.tolist()) == {0}
    faces = np.full((12, 128), np.nan)
    faces[1], faces[4], faces[8], faces[11] = np.zeros(128), np.zeros(128), np.full(128, 0.1), np.full(128, 0.1)
    assert person_splits(p, ids, faces, 0.55).tolist() == [0] * 6 + [1] * 6
    same = faces.copy()
    same[8], same[11] = np.full(128, 0.01), np.full(128, 0.01)  # 0.11 apart: the same person
    assert person_splits(p, ids, same, 0.55).tolist() == [0] * 12
