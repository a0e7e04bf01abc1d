"""The read side of review: the prioritised queue and one session's view, always within a user's scope.

Plain queries in, typed rows out. The queue holds sessions that finished processing, ordered by review
priority (risk score, highest first) and then age (oldest first), with filters by exam, flag kind, status
and date, and counts per status for the filter bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from core.states import SessionState
from core.tables import Exam, ExamSession, FlagSegment, Media, SessionReview, User
from core.vocabulary import FlagKind, MediaState, ReviewStatus
from review_ui.accounts import Scope
from review_ui.explain import Why, flag_why
from review_ui.results import flags_with_decisions

PAGE_SIZE = 50


class QueueStatus(StrEnum):
    TO_REVIEW = "to_review"  # processed, or in review with no live claim of another reviewer's
    IN_REVIEW = "in_review"  # claimed right now
    AWAITING_SECOND = ReviewStatus.AWAITING_SECOND.value  # a Rules Violation waiting for a second reviewer
    REVIEWED = "reviewed"


@dataclass(frozen=True)
class QueueFilter:
    status: QueueStatus = QueueStatus.TO_REVIEW
    exam_id: str | None = None
    kind: str | None = None
    since: date | None = None
    until: date | None = None
    page: int = 1

    def link(self, **changes: Any) -> str:
        """The queue's address for this filter with `changes` (another status, another page): the status tabs
        and the paging links keep every filter. A new status starts at page 1."""
        if "status" in changes and "page" not in changes:
            changes["page"] = 1
        moved = replace(self, **changes)
        fields = {
            "status": moved.status.value,
            "exam": moved.exam_id,
            "kind": moved.kind,
            "since": moved.since.isoformat() if moved.since else None,
            "until": moved.until.isoformat() if moved.until else None,
            "page": moved.page if moved.page > 1 else None,
        }
        return "/review/queue?" + urlencode({k: v for k, v in fields.items() if v})


def parse_queue_filter(fields: Mapping[str, str]) -> tuple[QueueFilter, list[str]]:
    """The queue's filter from its form or address. An empty field means "any" (the form sends every field,
    filled in or not); a value that cannot be read is left out and named in the returned problems, which
    the page shows beside the form."""
    problems: list[str] = []

    def choice(name: str, allowed: type[StrEnum], label: str) -> Any:
        value = fields.get(name, "").strip()
        if not value:
            return None
        try:
            return allowed(value)
        except ValueError:
            problems.append(f"{label}: {value!r} is not one of {', '.join(v.value for v in allowed)}")
            return None

    def day(name: str, label: str) -> date | None:
        value = fields.get(name, "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            problems.append(f"{label}: {value!r} is not a date (YYYY-MM-DD)")
            return None

    status = choice("status", QueueStatus, "Status") or QueueStatus.TO_REVIEW
    kind = choice("kind", FlagKind, "Flag")
    since, until = day("since", "From"), day("until", "To")
    page_text = fields.get("page", "").strip() or "1"
    page = int(page_text) if page_text.isdigit() and int(page_text) >= 1 else 1
    if page_text != str(page):
        problems.append(f"Page: {page_text!r} is not a page number")
    exam = fields.get("exam", "").strip() or None
    return QueueFilter(status, exam, kind.value if kind else None, since, until, page), problems


@dataclass(frozen=True)
class QueueRow:
    session_id: str
    exam: str
    candidate_id: str
    risk_score: float | None
    review_priority: str | None
    processed_at: datetime | None
    duration_s: float | None
    state: str
    claimed_by: str | None
    flag_counts: dict[str, int]
    first_reviewer: str | None = None  # who set a Rules Violation that awaits a second reviewer
    claim_minutes_left: int | None = None  # of a live claim
    qc_sample: bool = False  # the exam's auto-clear sent it to reviewers as a quality-control sample


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    counts: dict[QueueStatus, int]
    total: int
    page: int
    pages: int
    exams: list[tuple[str, str]]  # (id, external id) the user may filter by


def _status_clause(status: QueueStatus, now: datetime) -> ColumnElement[bool]:
    live_claim = and_(ExamSession.claimed_by.is_not(None), ExamSession.claim_expires_at > now)
    awaiting = exists().where(
        SessionReview.session_id == ExamSession.id, SessionReview.status == ReviewStatus.AWAITING_SECOND.value
    )
    in_review = ExamSession.state == SessionState.IN_REVIEW.value
    if status is QueueStatus.TO_REVIEW:
        return or_(ExamSession.state == SessionState.PROCESSED.value, and_(in_review, ~live_claim, ~awaiting))
    if status is QueueStatus.IN_REVIEW:
        return and_(in_review, live_claim)
    if status is QueueStatus.AWAITING_SECOND:
        return and_(in_review, ~live_claim, awaiting)
    return ExamSession.state == SessionState.REVIEWED.value


def _filtered(scope: Scope, query: QueueFilter) -> Select[ExamSession]:
    stmt = select(ExamSession).where(scope.sessions_clause())
    if query.exam_id:
        stmt = stmt.where(ExamSession.exam_id == query.exam_id)
    if query.kind:
        stmt = stmt.where(ExamSession.id.in_(select(FlagSegment.session_id).where(FlagSegment.kind == query.kind)))
    if query.since:
        stmt = stmt.where(ExamSession.processed_at >= datetime.combine(query.since, time(), tzinfo=UTC))
    if query.until:
        stmt = stmt.where(ExamSession.processed_at < datetime.combine(query.until + timedelta(days=1), time(), UTC))
    return stmt


def queue_page(db: Session, scope: Scope, query: QueueFilter, now: datetime) -> QueuePage:
    base = _filtered(scope, query)
    tallies = db.execute(  # one pass counts every status
        base.with_only_columns(
            *(func.coalesce(func.sum(case((_status_clause(status, now), 1), else_=0)), 0) for status in QueueStatus)
        )
    ).one()
    counts = dict(zip(QueueStatus, (int(n) for n in tallies), strict=True))
    total = counts[query.status]
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, query.page), pages)
    ordered = _in_queue_order(base, query.status, now).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    sessions = list(db.scalars(ordered))
    ids = [s.id for s in sessions]
    flag_counts: dict[str, dict[str, int]] = {i: {} for i in ids}
    for session_id, kind, n in db.execute(
        select(FlagSegment.session_id, FlagSegment.kind, func.count())
        .where(FlagSegment.session_id.in_(ids))
        .group_by(FlagSegment.session_id, FlagSegment.kind)
    ):
        flag_counts[session_id][kind] = n
    exam_names = dict(
        db.execute(select(Exam.id, Exam.external_id).where(Exam.id.in_({s.exam_id for s in sessions}))).all()
    )
    awaiting_second = dict(
        db.execute(
            select(SessionReview.session_id, SessionReview.reviewer_id).where(
                SessionReview.session_id.in_(ids), SessionReview.status == ReviewStatus.AWAITING_SECOND.value
            )
        ).all()
    )
    people = {s.claimed_by for s in sessions if s.claimed_by} | {r for r in awaiting_second.values() if r}
    usernames = dict(db.execute(select(User.id, User.username).where(User.id.in_(people))).all())
    rows = [
        QueueRow(
            session_id=s.id,
            exam=exam_names.get(s.exam_id, s.exam_id),
            candidate_id=s.candidate_id,
            risk_score=s.risk_score,
            review_priority=s.review_priority,
            processed_at=s.processed_at,
            duration_s=s.duration_s,
            state=s.state,
            claimed_by=usernames.get(live_claimant(s, now) or ""),
            flag_counts=flag_counts[s.id],
            first_reviewer=usernames.get(awaiting_second.get(s.id) or ""),
            claim_minutes_left=-(-int((s.claim_expires_at - now).total_seconds()) // 60)
            if live_claimant(s, now) and s.claim_expires_at
            else None,
            qc_sample=s.qc_sample,
        )
        for s in sessions
    ]
    visible_exams = select(Exam.id, Exam.external_id).where(scope.exams_clause()).order_by(Exam.external_id)
    exams = [(i, e) for i, e in db.execute(visible_exams)]
    return QueuePage(rows, counts, total, page, pages, exams)


def next_to_review(db: Session, scope: Scope, now: datetime) -> ExamSession | None:
    """The session at the top of this scope's "to review" queue, if any."""
    session: ExamSession | None = db.scalar(
        _in_queue_order(_filtered(scope, QueueFilter()), QueueStatus.TO_REVIEW, now).limit(1)
    )
    return session


def _in_queue_order(stmt: Select[ExamSession], status: QueueStatus, now: datetime) -> Select[ExamSession]:
    """The sessions of one status, riskiest first, then oldest."""
    return stmt.where(_status_clause(status, now)).order_by(
        ExamSession.risk_score.desc().nulls_last(), ExamSession.processed_at.asc(), ExamSession.id
    )


def live_claimant(session: ExamSession, now: datetime) -> str | None:
    """The user id of the session's claim while it holds (None: unclaimed, or the claim ran out)."""
    live = session.claimed_by and session.claim_expires_at and session.claim_expires_at > now
    return session.claimed_by if live else None


def timeline_ticks(duration_s: float, most: int = 12) -> list[tuple[float, str]]:
    """Marks for the timeline's time axis: (seconds, "m:ss"), at a round step that gives at most `most`."""
    if duration_s <= 0:
        return []
    steps = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800)
    step = next((s for s in steps if int(duration_s // s) + 1 <= most), 3600)
    return [(float(t), f"{t // 60}:{t % 60:02d}") for t in range(0, int(duration_s) + 1, step)]


@dataclass(frozen=True)
class FlagView:
    id: str
    kind: str
    start_s: float
    end_s: float
    score: float
    peak_s: float
    source: str
    evidence_count: int
    decision: str | None
    note: str
    why: Why | None = None


@dataclass(frozen=True)
class SessionView:
    session: ExamSession
    exam: str
    flags: list[FlagView]
    media: dict[str, Media]
    review: SessionReview | None
    claimed_by: str | None  # username of a live claim
    reviewer: str | None
    second_reviewer: str | None
    claim_expires_at: datetime | None = None  # when the live claim runs out


def visible_session(db: Session, scope: Scope, session_id: str) -> ExamSession | None:
    """The session if this scope may see it (and it is not erased); None otherwise, with no hint which."""
    session = db.scalar(
        select(ExamSession).where(
            ExamSession.id == session_id, ExamSession.state != SessionState.DELETED.value, scope.sessions_clause()
        )
    )
    return session


def session_view(db: Session, session: ExamSession, now: datetime) -> SessionView:
    flags = [
        FlagView(
            id=seg.id,
            kind=seg.kind,
            start_s=seg.start_ms / 1000,
            end_s=seg.end_ms / 1000,
            score=seg.score,
            peak_s=seg.peak_ms / 1000,
            source=seg.source,
            evidence_count=len(seg.evidence_keys),
            decision=decision.decision if decision else None,
            note=decision.note if decision else "",
            why=flag_why(seg.kind, seg.details),
        )
        for seg, decision in flags_with_decisions(db, session.id)
    ]
    review = db.get(SessionReview, session.id)
    live = live_claimant(session, now)
    user_ids = {live, review.reviewer_id if review else None, review.second_reviewer_id if review else None} - {None}
    names = dict(db.execute(select(User.id, User.username).where(User.id.in_(user_ids))).all())
    exam = db.get(Exam, session.exam_id)
    return SessionView(
        session=session,
        exam=exam.external_id if exam else session.exam_id,
        flags=flags,
        media={m.kind: m for m in session.media if m.state == MediaState.COMPLETE},
        review=review,
        claimed_by=names.get(live) if live else None,
        reviewer=names.get(review.reviewer_id) if review and review.reviewer_id else None,
        second_reviewer=names.get(review.second_reviewer_id) if review and review.second_reviewer_id else None,
        claim_expires_at=session.claim_expires_at if live else None,
    )
