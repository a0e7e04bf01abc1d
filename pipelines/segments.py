"""From per-frame evidence to flagged time segments: pure functions, no I/O.

Each flag kind has a per-frame evidence series in [0, 1], NaN where the frame tells nothing (no face for a
gaze flag, a covered camera for a face flag). A segment opens where evidence reaches `enter`, stays open
while it holds above `exit` (hysteresis, so a flicker around one threshold does not chop it up), bridges
unknown frames for at most `max_unknown_ms`, then is merged with a neighbour closer than `merge_gap_ms`
and dropped if shorter than `min_duration_ms`. A false flag can cost a learner their credit, so short or
uncertain evidence is dropped here rather than shown to a reviewer as a finding.

Evidence judged against a reference (looking away: the calibrated "at the screen" of one placement group) comes
with the reference per frame, and a segment never spans two: a run still open where the reference changes closes
there, and runs on either side of a change are not merged. Holding between the thresholds, bridging unknown frames
and merging across a short gap join one face's look away into one event. Across a cut, a camera move or another
person, the evidence after the change is judged against another reference: it must reach `enter` and last
`min_duration_ms` on its own. Weak evidence on both sides of a change is not one strong event. Measured on the
development sessions: a cartoon read as a turned head for a second just before a cut, and the candidate's own
0.4 s look 1.2 s after it, had made one 2.4 s flag (dev12, ``benchmarks/accuracy.py``). And a flag's
explanation names the one reference it was judged against.

Times are milliseconds from the start of the recording. A frame sampled at `t` stands for
`[t, t + frame_ms)`, so a segment ends where its last flagged frame's time span ends, clipped to the video.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

# The policy lives in the kernel (`core.exam_policy`): officers edit it and the API sets it. Re-exported, as the
# segmenter's callers read it here.
from core.exam_policy import AwayTolerances as AwayTolerances
from core.exam_policy import ExamPolicy as ExamPolicy
from core.exam_policy import KindPolicy as KindPolicy
from core.vocabulary import FlagKind


@dataclass(frozen=True)
class Segment:
    kind: FlagKind
    start_ms: int
    end_ms: int
    score: float  # mean evidence over the segment's known frames, in [0, 1]
    peak_ms: int  # the frame with the strongest evidence: where evidence frames are taken
    details: Mapping[str, Any] = field(default_factory=dict)
    """Why it was flagged, for the reviewer (e.g. a looking-away flag's signal trace against its reference)."""

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


def frame_duration_ms(timestamps_ms: NDArray[np.int64]) -> int:
    """The time one sampled frame stands for: the median sampling interval (1 s for a single frame)."""
    if len(timestamps_ms) < 2:
        return 1000
    return max(1, int(np.median(np.diff(timestamps_ms))))


def segment_kind(
    kind: FlagKind,
    timestamps_ms: NDArray[np.int64],
    evidence: NDArray[np.float64],
    policy: KindPolicy,
    *,
    video_end_ms: int,
    references: NDArray[np.int64] | None = None,
) -> list[Segment]:
    """Segments of one kind; they never overlap, are sorted, and lie within [0, video_end_ms]. ``references``:
    per frame, the reference the evidence was judged against; a segment never spans two (see the module
    docstring). None: one reference throughout."""
    if timestamps_ms.shape != evidence.shape or timestamps_ms.ndim != 1:
        raise ValueError(
            f"timestamps_ms and evidence must be 1-D of one length, got {timestamps_ms.shape} and {evidence.shape}"
        )
    if references is not None and references.shape != timestamps_ms.shape:
        raise ValueError(
            f"references must give one reference per frame: {timestamps_ms.shape[0]} frames, found {references.shape}"
        )
    if not policy.enabled or len(timestamps_ms) == 0:
        return []
    frame_ms = frame_duration_ms(timestamps_ms)
    reference = references if references is not None else np.zeros(len(timestamps_ms), np.int64)
    runs = _hysteresis_runs(timestamps_ms, evidence, policy, reference)
    merged = _merge(runs, timestamps_ms, policy.merge_gap_ms, frame_ms, reference)
    segments = []
    for first, last in merged:
        start = max(0, int(timestamps_ms[first]))
        end = min(video_end_ms, int(timestamps_ms[last]) + frame_ms)
        if end - start < max(policy.min_duration_ms, 1):
            continue
        window = evidence[first : last + 1]
        known = ~np.isnan(window)
        peak = first + int(np.nanargmax(window))
        segments.append(
            Segment(
                kind=kind,
                start_ms=start,
                end_ms=end,
                score=round(float(np.mean(window[known])), 4),
                peak_ms=int(timestamps_ms[peak]),
            )
        )
    return segments


def _hysteresis_runs(
    timestamps_ms: NDArray[np.int64], evidence: NDArray[np.float64], policy: KindPolicy, reference: NDArray[np.int64]
) -> list[tuple[int, int]]:
    """(first, last) frame indices of runs that open at `enter` and hold above `exit`, bridging unknowns, each
    within one reference: a run still open where the reference changes closes there."""
    runs: list[tuple[int, int]] = []
    first = last = -1
    for i, value in enumerate(evidence):
        if first >= 0 and reference[i] != reference[first]:
            runs.append((first, last))
            first = -1
        if first < 0:
            if not math.isnan(value) and value >= policy.enter:
                first = last = i
            continue
        if math.isnan(value):
            if timestamps_ms[i] - timestamps_ms[last] > policy.max_unknown_ms:
                runs.append((first, last))
                first = -1
            continue
        if value >= policy.exit:
            last = i
            continue
        runs.append((first, last))
        first = -1
    if first >= 0:
        runs.append((first, last))
    return runs


def _merge(
    runs: list[tuple[int, int]],
    timestamps_ms: NDArray[np.int64],
    gap_ms: int,
    frame_ms: int,
    reference: NDArray[np.int64],
) -> list[tuple[int, int]]:
    """Join runs separated by at most `gap_ms` of unflagged time, where no change of reference lies between."""
    changes = np.concatenate([[0], np.cumsum(reference[1:] != reference[:-1])])
    merged: list[tuple[int, int]] = []
    for first, last in runs:
        close = bool(merged) and timestamps_ms[first] - (timestamps_ms[merged[-1][1]] + frame_ms) <= gap_ms
        if close and changes[first] == changes[merged[-1][1]]:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def segment_all(
    timestamps_ms: NDArray[np.int64],
    evidence: Mapping[FlagKind, NDArray[np.float64]],
    policy: ExamPolicy,
    *,
    video_end_ms: int,
    references: Mapping[FlagKind, NDArray[np.int64]] | None = None,
) -> list[Segment]:
    """Every kind's segments, sorted by start time. ``references``: for the kinds whose evidence was judged against
    a reference, that reference per frame (see ``segment_kind``)."""
    found: list[Segment] = []
    for kind, series in evidence.items():
        found += segment_kind(
            kind,
            timestamps_ms,
            series,
            policy.for_kind(kind),
            video_end_ms=video_end_ms,
            references=(references or {}).get(kind),
        )
    return sorted(found, key=lambda s: (s.start_ms, s.kind))


def risk_score(segments: list[Segment], policy: ExamPolicy, *, video_end_ms: int) -> float:
    """A session's risk in [0, 1]: each segment adds weight x score x (its length, saturating at 30 s).

    Combined as 1 - prod(1 - contribution), so two strong flags weigh more than one, and the score never
    exceeds 1. It orders the review queue; it is not a verdict.
    """
    if video_end_ms <= 0:
        return 0.0
    remaining = 1.0
    for seg in segments:
        length = min(1.0, seg.duration_ms / 30_000)
        remaining *= 1.0 - policy.kinds[seg.kind].weight * seg.score * (0.5 + 0.5 * length)
    return round(1.0 - remaining, 4)
