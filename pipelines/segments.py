"""From per-frame evidence to flagged time segments: pure functions, no I/O.

Each flag kind has a per-frame evidence series in [0, 1], NaN where the frame tells nothing (no face for a
gaze flag, a covered camera for a face flag). A segment opens where evidence reaches `enter`, stays open
while it holds above `exit` (hysteresis, so a flicker around one threshold does not chop it up), bridges
unknown frames for at most `max_unknown_ms`, then is merged with a neighbour closer than `merge_gap_ms`
and dropped if shorter than `min_duration_ms`. A false flag can cost a learner their credit, so short or
uncertain evidence is dropped here rather than shown to a reviewer as a finding.

Times are milliseconds from the start of the recording. A frame sampled at `t` stands for
`[t, t + frame_ms)`, so a segment ends where its last flagged frame's time span ends, clipped to the video.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.vocabulary import FlagKind
from detectors import AwayConfig


@dataclass(frozen=True)
class KindPolicy:
    """How one kind of evidence becomes segments."""

    enabled: bool = True
    enter: float = 0.5
    exit: float = 0.3
    min_duration_ms: int = 2000
    merge_gap_ms: int = 1500
    max_unknown_ms: int = 1000
    weight: float = 1.0  # share in the session's risk score

    def __post_init__(self) -> None:
        if not 0.0 <= self.exit <= self.enter <= 1.0:
            raise ValueError(f"need 0 <= exit <= enter <= 1, got exit={self.exit} enter={self.enter}")
        for name in ("min_duration_ms", "merge_gap_ms", "max_unknown_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be within [0, 1], got {self.weight}")


def _defaults() -> dict[FlagKind, KindPolicy]:
    return {
        FlagKind.NO_FACE: KindPolicy(min_duration_ms=3000, weight=0.6),
        FlagKind.MULTIPLE_FACES: KindPolicy(min_duration_ms=1500, weight=0.9),
        FlagKind.LOOKING_AWAY: KindPolicy(min_duration_ms=2000, merge_gap_ms=2000, weight=0.5),
        # A covered lens is deliberate far more often than a face is briefly lost: 2 s of it is a finding.
        FlagKind.CAMERA_BLOCKED: KindPolicy(min_duration_ms=2000, weight=0.8),
        # Two descriptor samples apart at least: one blurred or turned sample is not another person.
        FlagKind.PERSON_CHANGED: KindPolicy(min_duration_ms=5000, merge_gap_ms=3000, max_unknown_ms=4000, weight=0.9),
        FlagKind.IDENTITY_MISMATCH: KindPolicy(
            min_duration_ms=5000, merge_gap_ms=3000, max_unknown_ms=4000, weight=1.0
        ),
    }


@dataclass(frozen=True)
class AwayTolerances:
    """How far from the calibrated "at the screen" an exam lets a candidate look (None: the detectors'
    default). An open-book exam may allow more pitch (reading notes); see ``detectors.AwayConfig``."""

    yaw_deg: float | None = None
    pitch_deg: float | None = None
    gaze_h: float | None = None

    def __post_init__(self) -> None:
        for name in ("yaw_deg", "pitch_deg", "gaze_h"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"looking_away.{name} must be > 0, got {value}")

    def applied_to(self, base: AwayConfig) -> AwayConfig:
        chosen = {k: v for k, v in asdict(self).items() if v is not None}
        return replace(base, **chosen) if chosen else base


@dataclass(frozen=True)
class ExamPolicy:
    """A per-exam flagging policy, stored with the exam as JSON.

    `sensitivity` scales every minimum duration by 1 / sensitivity: 2.0 flags episodes half as long,
    0.5 only episodes twice as long. Kinds left out of `kinds` use the defaults. `looking_away` holds the
    exam's tolerances around the calibrated "at the screen".
    """

    sensitivity: float = 1.0
    kinds: Mapping[FlagKind, KindPolicy] = field(default_factory=_defaults)
    looking_away: AwayTolerances = field(default_factory=AwayTolerances)

    def __post_init__(self) -> None:
        if not 0.1 <= self.sensitivity <= 10.0:
            raise ValueError(f"sensitivity must be within [0.1, 10], got {self.sensitivity}")
        object.__setattr__(self, "kinds", {**_defaults(), **{FlagKind(k): v for k, v in self.kinds.items()}})

    def for_kind(self, kind: FlagKind) -> KindPolicy:
        base = self.kinds[kind]
        return replace(base, min_duration_ms=round(base.min_duration_ms / self.sensitivity))

    def to_json(self) -> dict[str, Any]:
        return {
            "sensitivity": self.sensitivity,
            "kinds": {k.value: asdict(v) for k, v in self.kinds.items()},
            "looking_away": {k: v for k, v in asdict(self.looking_away).items() if v is not None},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ExamPolicy:
        """Parse a stored policy; unknown kinds or fields raise ValueError naming them."""
        if not data:
            return cls()
        unknown = set(data) - {"sensitivity", "kinds", "looking_away"}
        if unknown:
            raise ValueError(f"unknown policy fields {sorted(unknown)}; allowed: sensitivity, kinds, looking_away")
        kinds: dict[FlagKind, KindPolicy] = {}
        for name, values in (data.get("kinds") or {}).items():
            try:
                kind = FlagKind(name)
            except ValueError:
                raise ValueError(f"unknown flag kind {name!r}; known: {[k.value for k in FlagKind]}") from None
            try:
                kinds[kind] = replace(_defaults()[kind], **values)
            except TypeError as exc:
                raise ValueError(f"policy for {name}: {exc}") from None
        try:
            tolerances = AwayTolerances(**(data.get("looking_away") or {}))
        except TypeError as exc:
            raise ValueError(f"policy for looking_away: {exc}") from None
        return cls(sensitivity=float(data.get("sensitivity", 1.0)), kinds=kinds, looking_away=tolerances)


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
) -> list[Segment]:
    """Segments of one kind; they never overlap, are sorted, and lie within [0, video_end_ms]."""
    if timestamps_ms.shape != evidence.shape or timestamps_ms.ndim != 1:
        raise ValueError(
            f"timestamps_ms and evidence must be 1-D of one length, got {timestamps_ms.shape} and {evidence.shape}"
        )
    if not policy.enabled or len(timestamps_ms) == 0:
        return []
    frame_ms = frame_duration_ms(timestamps_ms)
    runs = _hysteresis_runs(timestamps_ms, evidence, policy)
    merged = _merge(runs, timestamps_ms, policy.merge_gap_ms, frame_ms)
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
    timestamps_ms: NDArray[np.int64], evidence: NDArray[np.float64], policy: KindPolicy
) -> list[tuple[int, int]]:
    """(first, last) frame indices of runs that open at `enter` and hold above `exit`, bridging unknowns."""
    runs: list[tuple[int, int]] = []
    first = last = -1
    for i, value in enumerate(evidence):
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
    runs: list[tuple[int, int]], timestamps_ms: NDArray[np.int64], gap_ms: int, frame_ms: int
) -> list[tuple[int, int]]:
    """Join runs separated by at most `gap_ms` of unflagged time."""
    merged: list[tuple[int, int]] = []
    for first, last in runs:
        if merged and timestamps_ms[first] - (timestamps_ms[merged[-1][1]] + frame_ms) <= gap_ms:
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
) -> list[Segment]:
    """Every kind's segments, sorted by start time."""
    found: list[Segment] = []
    for kind, series in evidence.items():
        found += segment_kind(kind, timestamps_ms, series, policy.for_kind(kind), video_end_ms=video_end_ms)
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
