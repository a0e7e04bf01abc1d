"""Who is on camera: evidence that the person changed during the session, or is not the enrolled candidate.

Pure functions over a session's signals. The detectors embed the tracked face now and then
(``face_descriptor_*`` columns, dlib's 128-d descriptor; see ``detectors.face_analysis``). Two references:
- the **session's first stable face**: the earliest stretch of the face track (``detectors.placement``)
  with at least ``min_reference_samples`` descriptors that agree with each other; its mean is the
  reference for ``person_changed``, which needs no enrolment;
- the **enrolment template** (the candidate's reference photo or clip), for ``identity_mismatch``.

A person changes across a discontinuity of the face track (someone must leave the frame for someone else to
sit down), or, in a recording cut together or a swap the tracker slid across, between two descriptors of
different people (``detectors.placement.person_splits``, as the calibration splits them). So each embedded
frame decides for the whole stretch around it: from the stretch's start, or the previous embedding in it, to
the next one. Frames with no face carry no evidence. One
descriptor far from the reference raises a short run of evidence; the flag's minimum duration (5 s by
default, two samples ``every_ms`` apart) keeps a single blurred or turned sample from becoming a flag.

What this proves and does not: two descriptors closer than ``match_distance`` are very probably the same
person (see ``benchmarks/identity.py`` for the measured rates); it is not liveness detection, and a
printed photo of the enrolled candidate held to the camera matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detectors import AwayConfig, Signals, stretches
from detectors.calibration import placement_of
from detectors.face_analysis import DESCRIPTOR_COLUMNS
from detectors.identity import descriptor_distance, template
from detectors.placement import person_splits
from pipelines.people import Fixtures, crowded_frames

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class IdentityRule:
    match_distance: float = 0.55
    """Descriptors farther apart than this are different people. Not dlib's 0.6: on our pairs 0.6 accepted
    about 1% of different-person single-frame pairs (look-alike swaps went unflagged), 0.55 accepts 0.02% while
    every same-person colour pair we have stays below 0.50 (benchmarks/identity.py, docs/identity.md)."""
    min_reference_samples: int = 2
    """The session's reference needs this many agreeing descriptors from one stretch."""

    def __post_init__(self) -> None:
        if not self.match_distance > 0 or self.min_reference_samples < 1:
            raise ValueError(f"IdentityRule: expected match_distance > 0 and min_reference_samples >= 1, found {self}")


@dataclass(frozen=True)
class Identity:
    """A session's identity evidence, per frame (NaN: no decision), and its summary for the reviewer."""

    person_changed: FloatArray
    identity_mismatch: FloatArray
    distance_to_reference: FloatArray
    """At embedded frames: distance to the session's first stable face (NaN elsewhere)."""
    distance_to_enrolment: FloatArray
    """At embedded frames: distance to the enrolment template (NaN elsewhere, or without an enrolment)."""
    reference_ms: int | None
    """When the session's reference face was first seen; None without one."""
    samples: int

    def summary(self, rule: IdentityRule) -> dict[str, float | int | None]:
        """Per session: how many samples, and how many matched each reference (for the reviewer and the API)."""
        enrolled = self.distance_to_enrolment[np.isfinite(self.distance_to_enrolment)]
        reference = self.distance_to_reference[np.isfinite(self.distance_to_reference)]
        return {
            "samples": self.samples,
            "reference_s": None if self.reference_ms is None else self.reference_ms / 1000,
            "matches_reference": int(np.sum(reference < rule.match_distance)),
            "matches_enrolment": int(np.sum(enrolled < rule.match_distance)) if enrolled.size else None,
            "median_distance_to_enrolment": round(float(np.median(enrolled)), 3) if enrolled.size else None,
            "threshold": rule.match_distance,
        }


def descriptors(signals: Signals) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """(frame indices, descriptors) of the embedded frames; none for signals recorded without them."""
    if not all(c in signals.columns for c in DESCRIPTOR_COLUMNS):
        return np.zeros(0, np.int64), np.zeros((0, len(DESCRIPTOR_COLUMNS)))
    matrix = np.stack([signals[c] for c in DESCRIPTOR_COLUMNS], axis=1)
    rows = np.flatnonzero(np.isfinite(matrix).all(axis=1))
    return rows, matrix[rows]


def _stretch_ids(
    signals: Signals, rows: NDArray[np.int64], found: NDArray[np.float64], rule: IdentityRule
) -> NDArray[np.int64]:
    """The calibration's stretches: split at discontinuities of the face track and where two successive
    descriptors are of different people (a takeover the tracker slid across), so a decision never spreads
    back over the frames of the person before."""
    placement = placement_of(signals)
    if placement is None or not len(signals):
        return np.zeros(len(signals), np.int64)
    faces = np.full((len(signals), found.shape[1]), np.nan)
    faces[rows] = found
    return person_splits(placement, stretches(placement, AwayConfig().placement), faces, rule.match_distance)


def session_reference(
    rows: NDArray[np.int64], found: NDArray[np.float64], stretch_ids: NDArray[np.int64], rule: IdentityRule
) -> tuple[NDArray[np.float32] | None, int | None]:
    """The mean descriptor of the earliest stretch whose descriptors agree (all within ``match_distance`` of
    their mean), and the frame it starts at; the first descriptor alone if no stretch has enough."""
    if len(rows) == 0:
        return None, None
    for stretch in np.unique(stretch_ids[rows]).tolist():
        mine = found[stretch_ids[rows] == stretch]
        if len(mine) < rule.min_reference_samples:
            continue
        centre = template(mine)
        if np.all(descriptor_distance(mine, centre) < rule.match_distance):
            return centre, int(rows[stretch_ids[rows] == stretch][0])
    return template(found[:1]), int(rows[0])


def _spread(decisions: dict[int, float], stretch_ids: NDArray[np.int64], present: NDArray[np.bool_]) -> FloatArray:
    """Per-frame evidence: within each stretch, the first embedded frame's decision holds from the stretch's
    start, and each decision until the next one; only frames that show a face carry it."""
    out = np.full(len(stretch_ids), np.nan)
    for stretch in np.unique(stretch_ids).tolist():
        frames = np.flatnonzero(stretch_ids == stretch)
        rows = [r for r in sorted(decisions) if stretch_ids[r] == stretch]
        for k, row in enumerate(rows):
            start = int(frames[0]) if k == 0 else row
            end = rows[k + 1] if k + 1 < len(rows) else int(frames[-1]) + 1
            out[start:end] = decisions[row]
    out[~present] = np.nan
    return out


def identity_evidence(signals: Signals, enrolment: NDArray[np.float32] | None, rule: IdentityRule) -> Identity:
    """Evidence for ``person_changed`` (against the session's first stable face) and ``identity_mismatch``
    (against the enrolment template, when there is one): 1 where the face is someone else, 0 where it is the
    same person, NaN where nothing was decided.

    Only a face seen alone decides. With two people in view (``pipelines.people.crowded_frames``: a picture on the
    wall does not count) the tracked face may be either, and someone beside the candidate is multiple_faces, not
    a change of candidate: those descriptors still split the stretches, as the calibration's, but decide nothing
    and are never the session's reference, and those frames carry no identity evidence."""
    n = len(signals)
    nan = np.full(n, np.nan)
    rows, found = descriptors(signals)
    crowded = crowded_frames(signals, Fixtures())
    alone = ~crowded[rows]
    if not np.any(alone):
        return Identity(nan, nan.copy(), nan.copy(), nan.copy(), None, 0)
    stretch_ids = _stretch_ids(signals, rows, found, rule)
    rows, found = rows[alone], found[alone]
    present = (signals["face_count"] >= 1 if "face_count" in signals.columns else np.ones(n, bool)) & ~crowded
    reference, reference_row = session_reference(rows, found, stretch_ids, rule)
    assert reference is not None
    to_reference = nan.copy()
    to_reference[rows] = descriptor_distance(found, reference)
    changed = _spread({int(r): float(to_reference[r] >= rule.match_distance) for r in rows}, stretch_ids, present)
    to_enrolment = nan.copy()
    mismatch = nan.copy()
    if enrolment is not None:
        to_enrolment[rows] = descriptor_distance(found, np.asarray(enrolment, np.float32))
        mismatch = _spread({int(r): float(to_enrolment[r] >= rule.match_distance) for r in rows}, stretch_ids, present)
    reference_ms = int(signals.timestamps_ms[reference_row]) if reference_row is not None else None
    return Identity(changed, mismatch, to_reference, to_enrolment, reference_ms, len(rows))
