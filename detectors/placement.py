"""Where the tracked face sits in the frame, and where that changes for good: the stretches of a session.

"Looking at the screen" is a head pose relative to the camera, so it holds only while the camera and the
person stay put. A session breaks that in a few ways: the candidate moves the laptop, sits back for good,
or someone else sits down. Each shows in the face track as a *discontinuity*: the face is gone for a
while and comes back elsewhere or at another size (the laptop was picked up, the person left), or it
jumps between two consecutive frames where it was seen farther than a head moves in a frame's time (a
cut, a knock, a brief loss after which the face is somewhere else).

The rule, and why:
- A new **stretch** starts only at such a discontinuity: after the face was absent for at least
  ``break_ms``, or after a jump of more than ``jump_face_sizes`` face sizes (centre) or a size change of
  more than ``jump_scale`` between two consecutive frames where it was seen, or a size change of more than
  ``step_scale`` within ``step_ms``. Continuous movement never splits a stretch: leaning in to read notes,
  turning the head or drifting in the chair all move the face a little per frame, so a candidate who reads
  notes for a minute stays in the stretch whose reference says they are looking away.
- The size step over a second is there because, carried across a cut, the face tracker slides onto the new
  face over a few frames, each step under the jump: at a camera move in the development sessions, 341, 313,
  279, 248 and 223 px in 0.8 s. It is wider than the jump between two frames because real movement adds up
  over a second: a candidate leaning back went from 264 to 198 px (1.33x) in one, and the tracker settling on
  a face from 379 to 522 px (1.38x).
- Stretches whose median placement agrees (centre within ``same_place_face_sizes`` face sizes, size
  within ``same_place_scale``) form one **placement group**: the candidate who left and came back to the
  same chair is calibrated on all of their time together.

These are pure functions over the per-frame columns; ``detectors.calibration`` turns groups into
references.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Placement", "PlacementRule", "person_splits", "placement_groups", "same_person_groups", "stretches"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class PlacementRule:
    """When the face's placement changes for good (see the module docstring for the rule)."""

    break_ms: int = 1500
    jump_face_sizes: float = 0.5
    jump_scale: float = 1.3
    step_ms: int = 1000
    step_scale: float = 1.5
    """A size change of more than ``step_scale`` against any frame of the stretch at most ``step_ms`` before
    is a discontinuity too (see the module docstring)."""
    same_place_face_sizes: float = 0.4
    same_place_scale: float = 1.25

    def __post_init__(self) -> None:
        for name in ("break_ms", "step_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"PlacementRule.{name}: expected >= 0, found {getattr(self, name)}")
        for name in ("jump_face_sizes", "same_place_face_sizes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PlacementRule.{name}: expected > 0, found {getattr(self, name)}")
        for name in ("jump_scale", "step_scale", "same_place_scale"):
            if not getattr(self, name) > 1:
                raise ValueError(f"PlacementRule.{name}: expected > 1, found {getattr(self, name)}")


@dataclass(frozen=True)
class Placement:
    """The tracked face per frame: centre and size in frame pixels (NaN where no usable face)."""

    timestamps_ms: IntArray
    x_px: FloatArray
    y_px: FloatArray
    size_px: FloatArray

    @property
    def usable(self) -> NDArray[np.bool_]:
        known: NDArray[np.bool_] = np.isfinite(self.x_px) & np.isfinite(self.y_px) & np.isfinite(self.size_px)
        return known & (np.nan_to_num(self.size_px) > 0)


def _moved(a: tuple[float, float, float], b: tuple[float, float, float], sizes: float, scale: float) -> bool:
    """Whether placement ``b`` is elsewhere than ``a``: centre farther than ``sizes`` face sizes, or size
    changed by more than ``scale``."""
    (ax, ay, asize), (bx, by, bsize) = a, b
    far = np.hypot(bx - ax, by - ay) > sizes * max(asize, bsize)
    return bool(far or max(asize, bsize) > scale * min(asize, bsize))


def stretches(placement: Placement, rule: PlacementRule) -> IntArray:
    """Stretch index per frame (0, 1, ...), starting a new one at each discontinuity of the face track.

    Frames without a usable face belong to the stretch of the last usable frame before them (frames before
    the first usable one, to the first stretch); a session with no usable face is one stretch, 0.
    """
    ts = placement.timestamps_ms
    usable = np.flatnonzero(placement.usable)
    ids = np.zeros(len(ts), np.int64)
    if usable.size == 0:
        return ids

    def at(k: int) -> tuple[float, float, float]:
        return placement.x_px[k], placement.y_px[k], placement.size_px[k]

    current, last = 0, int(usable[0])
    starts = [(0, 0)]  # (frame index, stretch)
    recent = [last]  # usable frames of the current stretch within step_ms of the frame being judged
    for i in usable[1:].tolist():
        recent = [k for k in recent if ts[i] - ts[k] <= rule.step_ms]
        jumped = _moved(at(last), at(i), rule.jump_face_sizes, rule.jump_scale)
        size = placement.size_px[i]
        stepped = any(
            max(size, placement.size_px[k]) > rule.step_scale * min(size, placement.size_px[k]) for k in recent
        )
        if ts[i] - ts[last] >= rule.break_ms or jumped or stepped:
            current += 1
            starts.append((i, current))
            recent = []
        recent.append(i)
        last = i
    for (begin, stretch), (end, _) in zip(starts, [*starts[1:], (len(ts), -1)], strict=True):
        ids[begin:end] = stretch
    return ids


CUT_STANDS_OUT = 3.0
"""The largest frame-to-frame move between two descriptors marks the cut only where it is this many times the next
largest: the face of a still jitters by 0.001-0.013 (log size change plus centre shift in face sizes) and dev09's
cut between two photos of its candidate moved it 0.079."""


def _cut_between(seen: list[int], moves: list[float], later: int) -> int:
    """The frame of the move that stands out (``CUT_STANDS_OUT``), or the later descriptor's frame where none does:
    the first frame sure to show the new person."""
    if not moves:
        return later
    order = np.argsort(moves)
    largest = moves[int(order[-1])]
    runner_up = moves[int(order[-2])] if len(moves) > 1 else 0.0
    return seen[1 + int(order[-1])] if largest > 0 and largest >= CUT_STANDS_OUT * runner_up else later


def person_splits(
    placement: Placement, stretch_ids: IntArray, descriptors: NDArray[np.float64], match_distance: float
) -> IntArray:
    """Stretches split where the person changes inside them: between two successive face descriptors of one
    stretch (rows of ``descriptors``, NaN where a frame was not embedded) that are ``match_distance`` or more
    apart, a new stretch starts at the frame where the face's placement changed most from the frame before
    (the cut), or at the later descriptor where no move stands out. Stretches are numbered again in order.

    A swap that keeps the placement, or one the tracker slid across, leaves the face track unbroken, and the
    new person would be judged against the one before: a tracker carried from one candidate to another after
    a cut, each framed alike, joins them (the changes mid-session benchmark: dev06's Obama, farther back, and
    Biden as recorded, one stretch and 6.6 s flagged as looking away). Descriptors are taken every few seconds
    and at each track start, where the face is near-frontal, sharp and in colour, so the split lands within
    one embedding interval of the change and at the frame where the track moved most."""
    embedded = np.flatnonzero(np.isfinite(descriptors).all(axis=1))
    ids = stretch_ids.copy()
    usable = placement.usable
    log_size = np.log(np.where(usable, placement.size_px, np.nan))
    for a, b in itertools.pairwise(embedded.tolist()):
        if stretch_ids[a] != stretch_ids[b]:
            continue
        if float(np.linalg.norm(descriptors[a] - descriptors[b])) < match_distance:
            continue
        seen = [k for k in range(a, b + 1) if usable[k]]
        moves = [
            abs(log_size[k] - log_size[j])
            + float(np.hypot(placement.x_px[k] - placement.x_px[j], placement.y_px[k] - placement.y_px[j]))
            / max(placement.size_px[k], placement.size_px[j])
            for j, k in itertools.pairwise(seen)
        ]
        ids[_cut_between(seen, moves, b) :] += 1
    _, renumbered = np.unique(ids, return_inverse=True)
    return renumbered.astype(np.int64)


def placement_groups(placement: Placement, stretch_ids: IntArray, rule: PlacementRule) -> IntArray:
    """Placement group per frame: stretches whose median placements agree share a group (numbered in order
    of first appearance). A stretch with no usable face joins the group of the stretch before it."""
    usable = placement.usable
    medians: list[tuple[float, float, float]] = []  # per group, of its first stretch
    group_of_stretch: dict[int, int] = {}
    for stretch in range(int(stretch_ids.max()) + 1 if len(stretch_ids) else 0):
        frames = (stretch_ids == stretch) & usable
        if not np.any(frames):
            group_of_stretch[stretch] = group_of_stretch.get(stretch - 1, 0)
            continue
        here = (
            float(np.median(placement.x_px[frames])),
            float(np.median(placement.y_px[frames])),
            float(np.median(placement.size_px[frames])),
        )
        match = next(
            (
                g
                for g, there in enumerate(medians)
                if not _moved(there, here, rule.same_place_face_sizes, rule.same_place_scale)
            ),
            None,
        )
        if match is None:
            medians.append(here)
            match = len(medians) - 1
        group_of_stretch[stretch] = match
    return np.array([group_of_stretch.get(int(s), 0) for s in stretch_ids], np.int64)


def same_person_groups(
    groups: IntArray, stretch_ids: IntArray, descriptors: NDArray[np.float64], match_distance: float
) -> IntArray:
    """Placement groups split by who is in them: stretches of one group whose face descriptors (rows of
    ``descriptors``, NaN where a frame was not embedded) belong to different people get groups of their own.

    Two people framed alike (a swap in the same chair, or two stills cut to the same size) share a placement
    but not an "at the screen". A stretch's person is the mean of its descriptors; stretches within
    ``match_distance`` of a person already seen in the group join that person; stretches with no descriptor
    stay with the group's first person.
    """
    out = groups.copy()
    embedded = np.isfinite(descriptors).all(axis=1)
    next_group = int(groups.max()) + 1 if len(groups) else 0
    for group in np.unique(groups).tolist():
        people: list[NDArray[np.float64]] = []  # mean descriptor per person met in this group
        for stretch in np.unique(stretch_ids[groups == group]).tolist():
            frames = (stretch_ids == stretch) & (groups == group)
            rows = descriptors[frames & embedded]
            if len(rows) == 0:
                continue
            mean = rows.mean(axis=0)
            match = next((k for k, p in enumerate(people) if float(np.linalg.norm(p - mean)) < match_distance), None)
            if match is None:
                people.append(mean)
                match = len(people) - 1
            if match > 0:  # the group's first person keeps the group's number
                out[frames] = next_group + match - 1
        next_group += max(0, len(people) - 1)
    return out
