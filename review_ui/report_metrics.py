"""The exam report's charted metrics, for one exam and the sessions of it that started within a date range.

What an integrity officer asks of an exam, each as a typed answer that the report page charts and a CSV exports:
how the sessions came out, how often each detector flags an hour of video, how often reviewers agree with each
detector (its precision in practice), how often second reviewers agree with a Rules Violation, how long a
candidate waits from upload to a final outcome, and how much each reviewer decides.

Every metric counts the same sessions: those of the exam that are not erased and whose `started_at` falls within
the `DateRange` (whole UTC days). Each query starts from those sessions (the `sessions` index on exam) and reaches
their rows through indexed keys (flags, decisions, outcome versions, state changes and audit entries by session),
so a report reads its exam's rows and no other's. The exam itself must be one the user's scope sees
(`exam_window`), exactly as for the rest of the report.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from core.states import SessionState
from core.tables import AuditEvent, ExamSession, ReviewOutcome, StateChange, User
from core.vocabulary import FlagKind, FlagSource, Outcome
from review_ui.accounts import Scope
from review_ui.reports import (
    AWAITING_SECOND_REVIEW,
    NOT_YET_REVIEWED,
    DateRange,
    ExamReport,
    KindTally,
    kind_tallies,
    outcome_counts,
    visible_exam,
)

SECOND_REVIEW_ACTION = "second_review"
"""The audit action `review_ui.decisions.second_review` records, with `confirmed` true or false in its detail."""
OUTCOME_ORDER = (*(o.value for o in Outcome), AWAITING_SECOND_REVIEW, NOT_YET_REVIEWED)
DETECTOR_KINDS = frozenset(k.value for k in FlagKind)
HOUR_S, DAY_S = 3600.0, 86400.0
TURNAROUND_BUCKETS = (
    ("< 1 h", HOUR_S),
    ("1-4 h", 4 * HOUR_S),
    ("4-24 h", DAY_S),
    ("1-3 d", 3 * DAY_S),
    ("> 3 d", math.inf),
)
"""Turnaround histogram buckets: a label, and the upper bound in seconds (each bucket holds [previous bound, it))."""


@dataclass(frozen=True)
class ExamWindow:
    """One exam the user may see, and the range of days its report counts sessions in."""

    exam_id: str
    external_id: str
    tenant_id: str
    tenant: str
    """The tenant's slug."""
    within: DateRange

    def sessions(self) -> ColumnElement[bool]:
        """A WHERE clause on `ExamSession`: the exam's sessions not erased, started within the range."""
        return and_(
            ExamSession.exam_id == self.exam_id,
            ExamSession.state != SessionState.DELETED.value,
            self.within.clause(),
        )


@dataclass(frozen=True)
class OutcomeCount:
    outcome: str
    """A final `Outcome`, `AWAITING_SECOND_REVIEW` or `NOT_YET_REVIEWED`."""
    sessions: int


@dataclass(frozen=True)
class FlagRate:
    """Flags of one kind per hour of video: the detectors' flags, or (source reviewer) the flags reviewers added."""

    kind: str
    source: str
    """A `FlagSource`."""
    flags: int
    per_hour: float | None
    """None where the sessions hold no video (no duration known)."""


@dataclass(frozen=True)
class ConfirmRate:
    """How often reviewers confirmed one detector kind's flags: the detector's precision as reviewers see it."""

    kind: str
    confirmed: int
    dismissed: int

    @property
    def decided(self) -> int:
        return self.confirmed + self.dismissed

    @property
    def rate(self) -> float | None:
        """confirmed / (confirmed + dismissed); None before any decision."""
        return self.confirmed / self.decided if self.decided else None


@dataclass(frozen=True)
class SecondReviews:
    """Second reviews of Rules Violations: each one done counts once, confirmed or returned to the queue (a session
    returned, decided again a Rules Violation and confirmed counts twice). Read from the audit trail, which keeps the
    returned ones that the review tables no longer hold."""

    confirmed: int
    returned: int

    @property
    def done(self) -> int:
        return self.confirmed + self.returned

    @property
    def agreement(self) -> float | None:
        """The share the second reviewer confirmed; None before any second review."""
        return self.confirmed / self.done if self.done else None


@dataclass(frozen=True)
class TurnaroundLine:
    """One session's wait: from the end of its upload (its first change to `uploaded`) to its first final outcome."""

    session_id: str
    uploaded_at: datetime
    final_at: datetime

    @property
    def seconds(self) -> float:
        return (self.final_at - self.uploaded_at).total_seconds()


@dataclass(frozen=True)
class BucketCount:
    bucket: str
    sessions: int


@dataclass(frozen=True)
class Turnaround:
    """Upload to first final outcome, over the sessions that have both (a session uploaded before state changes
    were recorded has no upload time and is left out). Appeals do not count: only the first final outcome."""

    lines: tuple[TurnaroundLine, ...]
    median_s: float | None
    p90_s: float | None
    """The 90th percentile, nearest rank: the smallest wait at least 90% of the sessions did not exceed."""
    max_s: float | None
    buckets: tuple[BucketCount, ...]


@dataclass(frozen=True)
class ReviewerDay:
    """What one reviewer decided on one UTC day: final outcomes they decided first (a Rules Violation counts on
    the day its second reviewer confirmed it, when it became final) and second reviews they did."""

    username: str
    day: date
    final_outcomes: int
    second_reviews: int

    @property
    def total(self) -> int:
        return self.final_outcomes + self.second_reviews


@dataclass(frozen=True)
class ReviewerThroughput:
    username: str
    days: tuple[ReviewerDay, ...]
    """The days they decided anything, in order."""

    @property
    def final_outcomes(self) -> int:
        return sum(d.final_outcomes for d in self.days)

    @property
    def second_reviews(self) -> int:
        return sum(d.second_reviews for d in self.days)

    @property
    def total(self) -> int:
        return self.final_outcomes + self.second_reviews


@dataclass(frozen=True)
class ExamMetrics:
    """Every metric of one window, as the report page charts them."""

    window: ExamWindow
    sessions: int
    """Live sessions in the range."""
    video_s: float
    """Their recordings' total duration."""
    outcomes: tuple[OutcomeCount, ...]
    flag_rates: tuple[FlagRate, ...]
    confirm_rates: tuple[ConfirmRate, ...]
    second_reviews: SecondReviews
    turnaround: Turnaround
    throughput: tuple[ReviewerThroughput, ...]


@dataclass(frozen=True)
class SecondReviewDone:
    """One second review, as the audit trail holds it: who, when, and whether they confirmed."""

    username: str
    at: datetime
    confirmed: bool


def exam_window(db: Session, scope: Scope, exam_id: str, within: DateRange) -> ExamWindow | None:
    """The exam's window, or None where it does not exist or the scope may not see it (no hint which)."""
    found = visible_exam(db, scope, exam_id)
    if found is None:
        return None
    exam, slug = found
    return ExamWindow(exam.id, exam.external_id, exam.tenant_id, slug, within)


def exam_metrics(db: Session, window: ExamWindow, report: ExamReport | None = None) -> ExamMetrics:
    """Every metric of the window (each query once). `report`, the exam's report over the same window, lends its
    flag tallies and outcomes, which it counted the same way, so that a page showing both counts them once."""
    sessions, video_s = live_sessions(db, window)
    tallies = report.kinds if report is not None else kind_tallies(db, window.sessions())
    outcomes = report.outcomes if report is not None else outcome_counts(db, window.sessions(), sessions)
    reviews = _second_reviews(db, window)
    return ExamMetrics(
        window=window,
        sessions=sessions,
        video_s=video_s,
        outcomes=outcomes_of(outcomes),
        flag_rates=flag_rates(tallies, video_s),
        confirm_rates=confirm_rates(tallies),
        second_reviews=second_review_counts(reviews),
        turnaround=turnaround(_turnaround_lines(db, window)),
        throughput=throughput(_first_reviews(db, window), reviews),
    )


def live_sessions(db: Session, window: ExamWindow) -> tuple[int, float]:
    """How many sessions the window counts, and their recordings' total duration in seconds."""
    count, seconds = db.execute(select(func.count(), func.sum(ExamSession.duration_s)).where(window.sessions())).one()
    return int(count), float(seconds or 0.0)


def outcomes_of(counted: dict[str, int]) -> tuple[OutcomeCount, ...]:
    """Every outcome in a fixed order (none left out), then any other the database holds."""
    order = [*OUTCOME_ORDER, *sorted(set(counted) - set(OUTCOME_ORDER))]
    return tuple(OutcomeCount(outcome, counted.get(outcome, 0)) for outcome in order)


def flag_rates(tallies: Sequence[KindTally], video_s: float) -> tuple[FlagRate, ...]:
    """The detectors' flags per hour of video for every detector kind, then the flags reviewers added per hour for
    each kind they added (a detector's kind the detectors missed, or one only reviewers add)."""
    hours = video_s / HOUR_S

    def per_hour(flags: int) -> float | None:
        return flags / hours if hours > 0 else None

    detector = [
        FlagRate(t.kind, FlagSource.DETECTOR.value, t.flags, per_hour(t.flags))
        for t in tallies
        if t.kind in DETECTOR_KINDS or t.flags
    ]
    added = [
        FlagRate(t.kind, FlagSource.REVIEWER.value, t.reviewer_added, per_hour(t.reviewer_added))
        for t in tallies
        if t.reviewer_added
    ]
    return tuple(detector + added)


def confirm_rates(tallies: Sequence[KindTally]) -> tuple[ConfirmRate, ...]:
    """Per detector kind, the reviewers' decisions on its flags (the flags reviewers added are not counted: they
    are confirmed by whoever adds them)."""
    return tuple(ConfirmRate(t.kind, t.confirmed, t.dismissed) for t in tallies if t.kind in DETECTOR_KINDS or t.flags)


def second_review_counts(reviews: Sequence[SecondReviewDone]) -> SecondReviews:
    confirmed = sum(1 for r in reviews if r.confirmed)
    return SecondReviews(confirmed=confirmed, returned=len(reviews) - confirmed)


def turnaround(lines: Sequence[TurnaroundLine]) -> Turnaround:
    """The waits' median, 90th percentile (nearest rank), maximum and histogram (`TURNAROUND_BUCKETS`)."""
    waits = sorted(line.seconds for line in lines)
    counts = Counter(bucket_of(wait) for wait in waits)
    buckets = tuple(BucketCount(label, counts[label]) for label, _ in TURNAROUND_BUCKETS)
    if not waits:
        return Turnaround((), None, None, None, buckets)
    p90 = waits[(9 * len(waits) + 9) // 10 - 1]  # the rank ceil(0.9 n), in integer arithmetic
    ordered = tuple(sorted(lines, key=lambda line: (line.uploaded_at, line.session_id)))
    return Turnaround(ordered, statistics.median(waits), p90, waits[-1], buckets)


def bucket_of(seconds: float) -> str:
    """The `TURNAROUND_BUCKETS` label of a wait."""
    return next(label for label, bound in TURNAROUND_BUCKETS if seconds < bound)


def throughput(
    first_reviews: Sequence[tuple[str, datetime]], second_reviews: Sequence[SecondReviewDone]
) -> tuple[ReviewerThroughput, ...]:
    """Per reviewer and UTC day, final outcomes decided first (`first_reviews`: username, when it became final)
    and second reviews done; the busiest reviewer first."""
    tally: dict[tuple[str, date], list[int]] = {}
    for username, at in first_reviews:
        tally.setdefault((username, at.date()), [0, 0])[0] += 1
    for review in second_reviews:
        tally.setdefault((review.username, review.at.date()), [0, 0])[1] += 1
    days: dict[str, list[ReviewerDay]] = {}
    for (username, day), (finals, seconds) in sorted(tally.items()):
        days.setdefault(username, []).append(ReviewerDay(username, day, finals, seconds))
    reviewers = [ReviewerThroughput(username, tuple(d)) for username, d in days.items()]
    return tuple(sorted(reviewers, key=lambda r: (-r.total, r.username)))


def _second_reviews(db: Session, window: ExamWindow) -> list[SecondReviewDone]:
    """The second reviews done on the window's sessions, from the audit trail (by session: its index)."""
    rows = db.execute(
        select(AuditEvent.actor, AuditEvent.at, AuditEvent.detail)
        .join(ExamSession, ExamSession.id == AuditEvent.session_id)
        .where(window.sessions(), AuditEvent.action == SECOND_REVIEW_ACTION, AuditEvent.tenant_id == window.tenant_id)
    )
    return [
        SecondReviewDone(actor.removeprefix("user:"), at, detail.get("confirmed") is True) for actor, at, detail in rows
    ]


def _first_reviews(db: Session, window: ExamWindow) -> list[tuple[str, datetime]]:
    """Every final outcome (appeals' too) of the window's sessions that a reviewer decided: who, and when it became
    final. Outcomes no person decided have no reviewer and are not counted."""
    rows = db.execute(
        select(User.username, ReviewOutcome.decided_at)
        .join(ExamSession, ExamSession.id == ReviewOutcome.session_id)
        .join(User, User.id == ReviewOutcome.decided_by)
        .where(window.sessions())
    )
    return [(username, at) for username, at in rows]


def _turnaround_lines(db: Session, window: ExamWindow) -> list[TurnaroundLine]:
    uploaded = func.min(StateChange.at)
    rows = db.execute(
        select(ExamSession.id, uploaded, ReviewOutcome.decided_at)
        .join(ReviewOutcome, and_(ReviewOutcome.session_id == ExamSession.id, ReviewOutcome.version == 1))
        .join(
            StateChange,
            and_(StateChange.session_id == ExamSession.id, StateChange.to_state == SessionState.UPLOADED.value),
        )
        .where(window.sessions())
        .group_by(ExamSession.id, ReviewOutcome.decided_at)
    )
    return [TurnaroundLine(session_id, uploaded_at, final_at) for session_id, uploaded_at, final_at in rows]


# -- one metric at a time, as a table (the CSV exports) -----------------------------------------------------
Table = tuple[list[str], list[list[object]]]
"""A header and its rows: times in ISO 8601 UTC, shares as fractions, hours and rates rounded to 4 places."""


def _outcomes_table(db: Session, window: ExamWindow) -> Table:
    sessions, _ = live_sessions(db, window)
    counts = outcomes_of(outcome_counts(db, window.sessions(), sessions))
    return ["outcome", "sessions"], [[c.outcome, c.sessions] for c in counts]


def _flags_per_hour_table(db: Session, window: ExamWindow) -> Table:
    _, video_s = live_sessions(db, window)
    hours = _rounded(video_s / HOUR_S)
    rates = flag_rates(kind_tallies(db, window.sessions()), video_s)
    header = ["kind", "source", "flags", "video_hours", "flags_per_hour"]
    return header, [[r.kind, r.source, r.flags, hours, _rounded(r.per_hour)] for r in rates]


def _confirm_rate_table(db: Session, window: ExamWindow) -> Table:
    rates = confirm_rates(kind_tallies(db, window.sessions()))
    header = ["kind", "confirmed", "dismissed", "decided", "confirm_rate"]
    return header, [[r.kind, r.confirmed, r.dismissed, r.decided, _rounded(r.rate)] for r in rates]


def _second_review_table(db: Session, window: ExamWindow) -> Table:
    s = second_review_counts(_second_reviews(db, window))
    return ["confirmed", "returned", "second_reviews", "agreement"], [
        [s.confirmed, s.returned, s.done, _rounded(s.agreement)]
    ]


def _turnaround_table(db: Session, window: ExamWindow) -> Table:
    lines = turnaround(_turnaround_lines(db, window)).lines
    header = ["session_id", "uploaded_at", "first_final_at", "turnaround_hours", "bucket"]
    return header, [
        [line.session_id, line.uploaded_at.isoformat(), line.final_at.isoformat(), _rounded(line.seconds / HOUR_S),
         bucket_of(line.seconds)]
        for line in lines
    ]  # fmt: skip


def _throughput_table(db: Session, window: ExamWindow) -> Table:
    reviewers = throughput(_first_reviews(db, window), _second_reviews(db, window))
    header = ["reviewer", "day", "final_outcomes", "second_reviews", "total"]
    rows: list[list[object]] = [
        [d.username, d.day.isoformat(), d.final_outcomes, d.second_reviews, d.total] for r in reviewers for d in r.days
    ]
    return header, rows


METRIC_TABLES: dict[str, Callable[[Session, ExamWindow], Table]] = {
    "outcomes": _outcomes_table,
    "flags_per_hour": _flags_per_hour_table,
    "confirm_rate": _confirm_rate_table,
    "second_review": _second_review_table,
    "turnaround": _turnaround_table,
    "throughput": _throughput_table,
}
"""Every metric a report charts and exports, by the name its CSV's URL carries; each queries only what it needs."""


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
