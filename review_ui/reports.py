"""Reports for integrity officers: per exam, what was recorded, what the detectors flagged, what reviewers decided.

Plain queries in, typed rows out, always within the user's scope. For each flag kind the report gives how
often reviewers confirmed the detectors' flags (confirmed / decided): the number an officer watches to see
whether a kind raises too many false flags for an exam, and the first thing to look at before trusting a
policy. Session lines carry the pseudonymous candidate and attempt ids the platform sent, never more.
Erased sessions are counted by state but listed nowhere.

Every CSV this UI exports goes through `csv_document`, which neutralises cells a spreadsheet would run as a
formula (OWASP's CSV injection advice): an export is opened in Excel or LibreOffice by design.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
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


def exam_report(db: Session, scope: Scope, exam_id: str, *, max_sessions: int | None = None) -> ExamReport | None:
    """The report of one exam, or None where it does not exist or the scope may not see it (no hint which)."""
    found = db.execute(_visible_exams(scope).where(Exam.id == exam_id)).first()
    if found is None:
        return None
    exam, slug = found
    in_exam = ExamSession.exam_id == exam.id
    live = ExamSession.state != SessionState.DELETED.value
    states = {
        state: n
        for state, n in db.execute(select(ExamSession.state, func.count()).where(in_exam).group_by(ExamSession.state))
    }

    # What reviewers made of the flags, counted the same way per kind (the exam's tallies) and per session.
    detector = FlagSegment.source == FlagSource.DETECTOR.value
    flag_counts = (
        func.count().filter(detector).label("flags"),
        func.count(FlagDecision.segment_id)
        .filter(detector, FlagDecision.decision == Decision.CONFIRMED.value)
        .label("confirmed"),
        func.count(FlagDecision.segment_id)
        .filter(detector, FlagDecision.decision == Decision.DISMISSED.value)
        .label("dismissed"),
        func.count().filter(~detector).label("added"),
    )

    def counted(key: InstrumentedAttribute[str]) -> Select[str, int, int, int, int]:
        return (
            select(key, *flag_counts)
            .join(ExamSession, ExamSession.id == FlagSegment.session_id)
            .outerjoin(FlagDecision, FlagDecision.segment_id == FlagSegment.id)
            .where(in_exam, live)
            .group_by(key)
        )

    by_kind = {
        kind: KindTally(kind, flags, confirmed, dismissed, added)
        for kind, flags, confirmed, dismissed, added in db.execute(counted(FlagSegment.kind))
    }
    kinds = [by_kind.pop(k.value, KindTally(k.value, 0, 0, 0, 0)) for k in FlagKind] + list(by_kind.values())
    per_session = counted(FlagSegment.session_id).subquery()
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
        .where(in_exam, live)
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
    outcomes: dict[str, int] = {}
    for outcome, status, n in db.execute(
        select(SessionReview.outcome, SessionReview.status, func.count())
        .join(ExamSession, ExamSession.id == SessionReview.session_id)
        .where(in_exam, live)
        .group_by(SessionReview.outcome, SessionReview.status)
    ):
        key = outcome if status == ReviewStatus.FINAL else AWAITING_SECOND_REVIEW
        outcomes[key] = outcomes.get(key, 0) + n
    outcomes[NOT_YET_REVIEWED] = _live(states) - sum(outcomes.values())
    return ExamReport(exam.id, exam.external_id, exam.title, slug, exam.tenant_id, states, outcomes, kinds, lines)


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
