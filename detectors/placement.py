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
  more than ``jump_scale`` between two consecutive frames where it was seen. Continuous movement
  never splits a stretch: leaning in to read notes, turning the head or drifting in the chair all move
  the face a little per frame, so a candidate who reads notes for a minute stays in the stretch whose
  reference says they are looking away.
- Stretches whose median placement agrees (centre within ``same_place_face_sizes`` face sizes, size
  within ``same_place_scale``) form one **placement group**: the candidate who left and came back to the
  same chair is calibrated on all of their time together.

These are pure functions over the per-frame columns; ``detectors.calibration`` turns groups into
references.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Placement", "PlacementRule", "placement_groups", "same_person_groups", "stretches"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class PlacementRule:
    """When the face's placement changes for good (see the module docstring for the rule)."""

    break_ms: int = 1500
    jump_face_sizes: float = 0.5
    jump_scale: float = 1.3
    same_place_face_sizes: float = 0.4
    same_place_scale: float = 1.25

    def __post_init__(self) -> None:
        if self.break_ms < 0:
            raise ValueError(f"PlacementRule.break_ms: expected >= 0, found {self.break_ms}")
        for name in ("jump_face_sizes", "same_place_face_sizes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PlacementRule.{name}: expected > 0, found {getattr(self, name)}")
        for name in ("jump_scale", "same_place_scale"):
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
    current, last = 0, int(usable[0])
    starts = [(0, 0)]  # (frame index, stretch)
    for i in usable[1:].tolist():
        gap = int(ts[i] - ts[last])
        a = (placement.x_px[last], placement.y_px[last], placement.size_px[last])
        b = (placement.x_px[i], placement.y_px[i], placement.size_px[i])
        if gap >= rule.break_ms or _moved(a, b, rule.jump_face_sizes, rule.jump_scale):
            current += 1
            starts.append((i, current))
        last = i
    for (begin, stretch), (end, _) in zip(starts, [*starts[1:], (len(ts), -1)], strict=True):
        ids[begin:end] = stretch
    return ids


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
