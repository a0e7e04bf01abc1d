"""Reports for integrity officers: per exam, what was recorded, what the detectors flagged, what reviewers decided.

Plain queries in, typed rows out, always within the user's scope. For each flag kind the report gives how
often reviewers confirmed the detectors' flags (confirmed / decided): the number an officer watches to see
whether a kind raises too many false flags for an exam, and the first thing to look at before trusting a
policy. Session lines carry the pseudonymous candidate and attempt ids the platform sent, never more.
Erased sessions are counted by state but listed nowhere. A report may be cut to the sessions that started
within a `DateRange` of whole UTC days; `review_ui.report_metrics` charts the same sessions.

Every CSV this UI exports goes through `csv_document`, which neutralises cells a spreadsheet would run as a
formula (OWASP's CSV injection advice): an export is opened in Excel or LibreOffice by design.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Select, and_, func, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from core.states import SessionState
from core.tables import Exam, ExamSession, FlagDecision, FlagSegment, SessionReview, Tenant, User
from core.vocabulary import Decision, FlagKind, FlagSource, Outcome, ReviewStatus
from review_ui.accounts import Scope

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""How a text cell starts when a spreadsheet would evaluate it (OWASP: CSV injection)."""
AWAITING_SECOND_REVIEW = "awaiting second review"
"""What a report shows as the outcome of a Rules Violation that a second reviewer has not yet confirmed."""
NOT_YET_REVIEWED = "not yet reviewed"
DATE_FORMAT_HELP = "write dates as YYYY-MM-DD, e.g. 2025-03-31"


class BadDateRange(ValueError):
    """A report's date range that cannot be read; the message says which date and how to write it."""


@dataclass(frozen=True)
class DateRange:
    """The sessions a report counts by the day they started (UTC): from `first` to `last`, both days included;
    None leaves that end open."""

    first: date | None = None
    last: date | None = None

    @classmethod
    def parse(cls, first: str | None, last: str | None) -> DateRange:
        """The range a report's form sent (`from`, `to`: empty for an open end); raises `BadDateRange`."""
        within = cls(_parse_day("from", first), _parse_day("to", last))
        if within.first and within.last and within.first > within.last:
            raise BadDateRange(f"the from date {within.first} is after the to date {within.last}; swap them")
        return within

    def clause(self) -> ColumnElement[bool]:
        """A WHERE clause on `ExamSession.started_at`: bounds on the column itself, never a function of it."""
        bounds = []
        if self.first is not None:
            bounds.append(ExamSession.started_at >= datetime.combine(self.first, time(), UTC))
        if self.last is not None:
            bounds.append(ExamSession.started_at < datetime.combine(self.last + timedelta(days=1), time(), UTC))
        return and_(true(), *bounds)

    @property
    def query(self) -> str:
        """The range as the report's URLs carry it (`from=...&to=...`, the open ends left out)."""
        ends = (("from", self.first), ("to", self.last))
        return "&".join(f"{name}={day.isoformat()}" for name, day in ends if day is not None)

    def audit_detail(self) -> dict[str, str | None]:
        return {"from": _iso(self.first), "to": _iso(self.last)}


ALL_DATES = DateRange()


def _parse_day(name: str, value: str | None) -> date | None:
    if not value or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise BadDateRange(f"the {name} date {value[:40]!r} is not a date: {DATE_FORMAT_HELP}") from None


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


@dataclass(frozen=True)
class KindTally:
    """One flag kind across an exam: the detectors' flags and what reviewers made of them."""

    kind: str
    flags: int
    confirmed: int
    dismissed: int
    reviewer_added: int

    @property
    def undecided(self) -> int:
        return self.flags - self.confirmed - self.dismissed

    @property
    def confirm_rate(self) -> float | None:
        """Share of the decided detector flags that reviewers confirmed; None before any decision."""
        decided = self.confirmed + self.dismissed
        return self.confirmed / decided if decided else None


@dataclass(frozen=True)
class SessionLine:
    session_id: str
    candidate_id: str
    attempt_id: str
    started_at: datetime
    state: str
    duration_s: float | None
    risk_score: float | None
    review_priority: str | None
    flags: int
    """Detector flags; ``confirmed`` and ``dismissed`` count reviewers' decisions on them."""
    confirmed: int
    dismissed: int
    reviewer_added: int
    outcome: str
    """Final outcome, ``AWAITING_SECOND_REVIEW`` for a Rules Violation not confirmed yet, or ``NOT_YET_REVIEWED``."""
    reviewer: str | None
    second_reviewer: str | None
    decided_at: datetime | None
    """When the outcome became final (None until then)."""


@dataclass(frozen=True)
class ExamReport:
    exam_id: str
    external_id: str
    title: str
    tenant: str
    """The tenant's slug."""
    tenant_id: str
    states: dict[str, int]
    """Sessions per state, erased ones included."""
    outcomes: dict[str, int]
    kinds: list[KindTally]
    sessions: list[SessionLine]
    """Riskiest first; erased sessions left out."""

    @property
    def live(self) -> int:
        """Sessions not erased."""
        return _live(self.states)


@dataclass(frozen=True)
class ExamSummary:
    exam_id: str
    external_id: str
    title: str
    tenant: str
    sessions: int
    reviewed: int
    violations: int


def _visible_exams(scope: Scope) -> Select[Exam, str]:
    return select(Exam, Tenant.slug).join(Tenant, Tenant.id == Exam.tenant_id).where(scope.exams_clause())


def exam_summaries(db: Session, scope: Scope) -> list[ExamSummary]:
    """Every exam this scope may see, with its live sessions, final reviews and confirmed violations."""
    live = ExamSession.state != SessionState.DELETED.value
    counts = (
        select(
            ExamSession.exam_id,
            func.count().label("sessions"),
            func.count(SessionReview.session_id)
            .filter(SessionReview.status == ReviewStatus.FINAL.value)
            .label("reviewed"),
            func.count(SessionReview.session_id)
            .filter(
                SessionReview.status == ReviewStatus.FINAL.value,
                SessionReview.outcome == Outcome.RULES_VIOLATION.value,
            )
            .label("violations"),
        )
        .outerjoin(SessionReview, SessionReview.session_id == ExamSession.id)
        .where(live)
        .group_by(ExamSession.exam_id)
        .subquery()
    )
    rows = db.execute(
        _visible_exams(scope)
        .add_columns(counts.c.sessions, counts.c.reviewed, counts.c.violations)
        .outerjoin(counts, counts.c.exam_id == Exam.id)
        .order_by(Tenant.slug, Exam.external_id)
    ).all()
    return [
        ExamSummary(exam.id, exam.external_id, exam.title, slug, sessions or 0, reviewed or 0, violations or 0)
        for exam, slug, sessions, reviewed, violations in rows
    ]


def visible_exam(db: Session, scope: Scope, exam_id: str) -> tuple[Exam, str] | None:
    """The exam and its tenant's slug, or None where it does not exist or the scope may not see it (no hint which)."""
    found = db.execute(_visible_exams(scope).where(Exam.id == exam_id)).first()
    return None if found is None else (found[0], found[1])


def exam_report(
    db: Session,
    scope: Scope,
    exam_id: str,
    *,
    within: DateRange = ALL_DATES,
    max_sessions: int | None = None,
) -> ExamReport | None:
    """The report of one exam over the sessions started `within` the range, or None where the exam does not exist
    or the scope may not see it (no hint which)."""
    found = visible_exam(db, scope, exam_id)
    if found is None:
        return None
    exam, slug = found
    in_exam = and_(ExamSession.exam_id == exam.id, within.clause())
    live = and_(in_exam, ExamSession.state != SessionState.DELETED.value)
    states = {
        state: n
        for state, n in db.execute(select(ExamSession.state, func.count()).where(in_exam).group_by(ExamSession.state))
    }
    kinds = kind_tallies(db, live)
    per_session = _flags_counted(FlagSegment.session_id, live).subquery()
    first, second = aliased(User), aliased(User)
    stmt = (
        select(
            ExamSession,
            SessionReview,
            first.username,
            second.username,
            per_session.c.flags,
            per_session.c.confirmed,
            per_session.c.dismissed,
            per_session.c.added,
        )
        .outerjoin(SessionReview, SessionReview.session_id == ExamSession.id)
        .outerjoin(first, first.id == SessionReview.reviewer_id)
        .outerjoin(second, second.id == SessionReview.second_reviewer_id)
        .outerjoin(per_session, per_session.c.session_id == ExamSession.id)
        .where(live)
        .order_by(ExamSession.risk_score.desc().nulls_last(), ExamSession.started_at, ExamSession.id)
    )
    if max_sessions is not None:
        stmt = stmt.limit(max_sessions)
    lines = [
        SessionLine(
            session_id=s.id,
            candidate_id=s.candidate_id,
            attempt_id=s.attempt_id,
            started_at=s.started_at,
            state=s.state,
            duration_s=s.duration_s,
            risk_score=s.risk_score,
            review_priority=s.review_priority,
            flags=flags or 0,
            confirmed=confirmed or 0,
            dismissed=dismissed or 0,
            reviewer_added=added or 0,
            outcome=_outcome(review),
            reviewer=reviewer,
            second_reviewer=second_reviewer,
            decided_at=review.finalised_at if review is not None and review.status == ReviewStatus.FINAL else None,
        )
        for s, review, reviewer, second_reviewer, flags, confirmed, dismissed, added in db.execute(stmt)
    ]
    outcomes = outcome_counts(db, live, _live(states))
    return ExamReport(exam.id, exam.external_id, exam.title, slug, exam.tenant_id, states, outcomes, kinds, lines)


def _flags_counted(key: InstrumentedAttribute[str], sessions: ColumnElement[bool]) -> Select[str, int, int, int, int]:
    """Per `key`: the detectors' flags, how many of them reviewers confirmed and dismissed, and the flags reviewers
    added, of the sessions that `sessions` selects. The exam's tallies and each session's are counted this way."""
    detector = FlagSegment.source == FlagSource.DETECTOR.value
    return (
        select(
            key,
            func.count().filter(detector).label("flags"),
            func.count(FlagDecision.segment_id)
            .filter(detector, FlagDecision.decision == Decision.CONFIRMED.value)
            .label("confirmed"),
            func.count(FlagDecision.segment_id)
            .filter(detector, FlagDecision.decision == Decision.DISMISSED.value)
            .label("dismissed"),
            func.count().filter(~detector).label("added"),
        )
        .join(ExamSession, ExamSession.id == FlagSegment.session_id)
        .outerjoin(FlagDecision, FlagDecision.segment_id == FlagSegment.id)
        .where(sessions)
        .group_by(key)
    )


def kind_tallies(db: Session, sessions: ColumnElement[bool]) -> list[KindTally]:
    """The flag tallies of the sessions that `sessions` selects: every detector kind (in `FlagKind` order, none left
    out), then any other kind a flag has (those only reviewers add), by name."""
    by_kind = {
        kind: KindTally(kind, flags, confirmed, dismissed, added)
        for kind, flags, confirmed, dismissed, added in db.execute(_flags_counted(FlagSegment.kind, sessions))
    }
    detector_kinds = [by_kind.pop(k.value, KindTally(k.value, 0, 0, 0, 0)) for k in FlagKind]
    return detector_kinds + sorted(by_kind.values(), key=lambda tally: tally.kind)


def outcome_counts(db: Session, sessions: ColumnElement[bool], live: int) -> dict[str, int]:
    """Sessions per final outcome, `AWAITING_SECOND_REVIEW` and `NOT_YET_REVIEWED`, of the `live` (not erased)
    sessions that `sessions` selects."""
    outcomes: dict[str, int] = {}
    for outcome, status, n in db.execute(
        select(SessionReview.outcome, SessionReview.status, func.count())
        .join(ExamSession, ExamSession.id == SessionReview.session_id)
        .where(sessions)
        .group_by(SessionReview.outcome, SessionReview.status)
    ):
        key = outcome if status == ReviewStatus.FINAL else AWAITING_SECOND_REVIEW
        outcomes[key] = outcomes.get(key, 0) + n
    outcomes[NOT_YET_REVIEWED] = live - sum(outcomes.values())
    return outcomes


def _live(states: dict[str, int]) -> int:
    return sum(n for state, n in states.items() if state != SessionState.DELETED.value)


def _outcome(review: SessionReview | None) -> str:
    if review is None:
        return NOT_YET_REVIEWED
    return review.outcome if review.status == ReviewStatus.FINAL else AWAITING_SECOND_REVIEW


CSV_COLUMNS = (
    "session_id",
    "candidate_id",
    "attempt_id",
    "started_at",
    "state",
    "duration_s",
    "risk_score",
    "review_priority",
    "flags",
    "confirmed",
    "dismissed",
    "reviewer_added",
    "outcome",
    "reviewer",
    "second_reviewer",
    "decided_at",
)


def report_csv(report: ExamReport) -> str:
    """The report's session lines as CSV, one row per session (times in ISO 8601, UTC)."""
    rows = ([_csv_value(getattr(line, column)) for column in CSV_COLUMNS] for line in report.sessions)
    return csv_document(CSV_COLUMNS, rows)


def _csv_value(value: object) -> object:
    return "" if value is None else value.isoformat() if isinstance(value, datetime) else value


def spreadsheet_safe(value: object) -> object:
    """`value` with a single quote put before text that starts like a formula, so that a spreadsheet shows it as
    text instead of running it; numbers and other text unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_document(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV file of `rows` under `header`, every cell made `spreadsheet_safe`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([spreadsheet_safe(value) for value in row] for row in rows)
    return out.getvalue()
