"""Scoring flagged segments against a session's labels, the way the held-out evaluation reports them.

Labels are the development sets' JSON (``intervals`` tiling the video with ``faces`` 0/1/2 and
``looking_away`` true/false/null, ``ignore`` bands around cuts; the built sessions add ``covered``). Per
flag kind, a labelled **event** is a merged run of positive intervals; it is **caught** when a segment of
that kind overlaps it (0.5 s slack). A segment is a **false alarm** when it catches no event (overlaps no
positive run, with the same slack) and covers at least 1 s of negative time outside the ignore bands. Touching
unknown time or a cut's ignore band does not excuse it: until 2026-12-07 it did, and flags that began in a cut's
band and then lay 3-15 s on time labelled otherwise (a candidate at the screen flagged as looking away, a face in
view flagged as no face) were not counted. **Time precision** is the share of flagged time
that lies in positive or unknown time. False alarms per hour are per hour of that kind's negative time.

Pure functions: a label dict and segments in, counts out. Used by ``benchmarks/accuracy.py`` and
``benchmarks/fairness.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.vocabulary import FlagKind
from pipelines.segments import Segment

SLACK_MS = 500
MIN_FALSE_MS = 1000
Span = tuple[int, int]
Interval = dict[str, Any]


@dataclass
class KindScore:
    """Event counts for one flag kind, summed over sessions with ``+``."""

    events: int = 0
    caught: int = 0
    false_alarms: int = 0
    negative_ms: int = 0
    flagged_ms: int = 0
    flagged_right_ms: int = 0
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)
    """Where each false alarm lies ("dev12.mp4 49.4-51.8 s")."""

    def __add__(self, other: KindScore) -> KindScore:
        return KindScore(
            self.events + other.events,
            self.caught + other.caught,
            self.false_alarms + other.false_alarms,
            self.negative_ms + other.negative_ms,
            self.flagged_ms + other.flagged_ms,
            self.flagged_right_ms + other.flagged_right_ms,
            self.missed + other.missed,
            self.false + other.false,
        )

    @property
    def recall(self) -> float:
        return self.caught / self.events if self.events else 1.0

    @property
    def fa_per_h(self) -> float:
        return self.false_alarms / (self.negative_ms / 3_600_000) if self.negative_ms else 0.0

    @property
    def time_precision(self) -> float:
        return self.flagged_right_ms / self.flagged_ms if self.flagged_ms else 1.0


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def runs(intervals: Iterable[Interval], keep: Callable[[Interval], bool]) -> list[Span]:
    """Merged [start, end) ms runs of the intervals that ``keep`` selects."""
    out: list[Span] = []
    for i in intervals:
        if not keep(i):
            continue
        s, e = _ms(i["start_s"]), _ms(i["end_s"])
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def overlap(a: Span, b: Span) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def minus(spans: list[Span], holes: list[Span]) -> list[Span]:
    """The parts of ``spans`` outside every one of ``holes``."""
    out = spans
    for h0, h1 in holes:
        out = [piece for a, b in out for piece in ((a, min(b, h0)), (max(a, h1), b)) if piece[0] < piece[1]]
    return out


def _covered(i: Interval) -> bool:
    return bool(i.get("covered"))


LABELS: dict[FlagKind, tuple[Callable[[Interval], bool], Callable[[Interval], bool]]] = {
    # kind -> (positive, negative); anything else is unknown
    FlagKind.NO_FACE: (lambda i: i["faces"] == 0 and not _covered(i), lambda i: i["faces"] >= 1),
    FlagKind.MULTIPLE_FACES: (lambda i: i["faces"] >= 2, lambda i: i["faces"] <= 1 and not _covered(i)),
    FlagKind.LOOKING_AWAY: (
        lambda i: i["faces"] == 1 and i["looking_away"] is True,
        lambda i: i["faces"] == 1 and i["looking_away"] is False,
    ),
    FlagKind.CAMERA_BLOCKED: (_covered, lambda i: not _covered(i)),
}


def score_kind(truth: dict[str, Any], kind: FlagKind, segments: Iterable[Segment]) -> KindScore:
    positive, negative = LABELS[kind]
    intervals = truth["intervals"]
    ignore = [(_ms(a), _ms(b)) for a, b in truth.get("ignore", [])]
    pos = runs(intervals, positive)
    neg = runs(intervals, negative)
    unknown = runs(intervals, lambda i: not positive(i) and not negative(i)) + ignore
    spans = [(s.start_ms, s.end_ms) for s in segments if s.kind is kind]
    scored_neg = minus(neg, ignore)
    score = KindScore(events=len(pos), negative_ms=sum(b - a for a, b in neg))
    for a, b in pos:
        if any(overlap((a - SLACK_MS, b + SLACK_MS), span) > 0 for span in spans):
            score.caught += 1
        else:
            score.missed.append(f"{truth['video']} {a / 1000:.1f}-{b / 1000:.1f} s")
    for span in spans:
        length = span[1] - span[0]
        right = min(length, sum(overlap(span, r) for r in pos + unknown))
        score.flagged_ms += length
        score.flagged_right_ms += right
        if any(overlap((a - SLACK_MS, b + SLACK_MS), span) > 0 for a, b in pos):
            continue
        if sum(overlap(span, r) for r in scored_neg) >= MIN_FALSE_MS:
            score.false_alarms += 1
            score.false.append(f"{truth['video']} {span[0] / 1000:.1f}-{span[1] / 1000:.1f} s")
    return score


def score_session(truth: dict[str, Any], segments: list[Segment]) -> dict[FlagKind, KindScore]:
    return {kind: score_kind(truth, kind, segments) for kind in LABELS}


def total(scores: Iterable[dict[FlagKind, KindScore]]) -> dict[FlagKind, KindScore]:
    out = {kind: KindScore() for kind in LABELS}
    for per_session in scores:
        for kind, score in per_session.items():
            out[kind] = out[kind] + score
    return out
