"""What a platform learns of a review: the outcome, the per-flag decisions and the reviewers' comments.

One typed shape, used by `GET /v1/sessions/{id}/review` (with evidence URLs added) and by the signed
webhook, so a platform parses one thing and the OpenAPI document describes it. Reviewers appear by an
opaque id, not by name: the platform needs who-decided for appeals, not our staff list.

Nothing a reviewer wrote leaves before the review is final: while a Rules Violation waits for its second
reviewer (four eyes), or while the first reviewer is still deciding, the platform sees the detectors' flags
with no decisions, no notes, no reviewer-added flags and no comments. Otherwise it could act on one
reviewer's opinion that the second reviewer then overturns.

Notes are internal unless their reviewer marked them for the platform (`note_shared`, a tick beside each note
in the review UI): a reviewer writes for colleagues and officers first, in words not meant for the candidate's
institution. Once final, a flag's note and each comment reach the platform only when shared; an internal one is
left out (a flag's `note` is null, the comment is not listed), never blanked in place, so nothing tells a platform
that there was one.

Appeals: each final outcome is a version (`version`, with every earlier one in `history`). While an
integrity officer has a final review reopened, the platform keeps the last final outcome exactly as it had
it, flagged `under_appeal`, rather than seeing it vanish: that outcome stands until the appeal replaces it
(a platform may already have released a grade on it), and the re-review's decisions are as unfinished as a
first reviewer's, so none of them leaves early either. The next final outcome arrives as the next version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_serializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import ExamSession, FlagDecision, FlagSegment, ReviewOutcome, SessionReview
from core.vocabulary import AddedFlagKind, Decision, FlagSource, Outcome, ReviewStatus, added_flag_kind


def _iso(value: datetime | None) -> str | None:
    """`+00:00`, as platforms have always received it (pydantic's default would write `Z`)."""
    return value.isoformat() if value else None


class FlagResult(BaseModel):
    id: str
    kind: AddedFlagKind = Field(
        description="a detector's kind, or one only reviewers add (phone, another_voice, notes, other_person, other)"
    )
    start_s: float
    end_s: float
    source: FlagSource
    score: float
    decision: Decision | None = Field(description="None until the review is final")
    note: str | None = Field(
        description="the reviewer's note on this flag, once the review is final and only if the reviewer shared it "
        "with the platform; None otherwise (notes are internal by default)"
    )


class Comment(BaseModel):
    by: str | None = Field(description="the reviewer's opaque id")
    role: Literal["reviewer", "second_reviewer"]
    text: str


class OutcomeVersion(BaseModel):
    """One final outcome of the session, and, if an officer reopened it for an appeal, who did, when and why."""

    version: int
    outcome: Outcome
    decided_by: str | None = Field(description="the deciding reviewer's opaque id")
    decided_by_system: str | None = Field(
        None,
        description="set when no person decided: `system:auto_clear` for a session the exam's auto-clear cleared "
        "(the detectors found nothing in it); `decided_by` is then null",
    )
    second_by: str | None = Field(description="the opaque id of the reviewer who confirmed a Rules Violation")
    decided_at: datetime
    reopened_by: str | None = Field(description="the opaque id of the integrity officer who reopened it")
    reopen_reason: str | None
    reopened_at: datetime | None

    @field_serializer("decided_at", "reopened_at")
    def _iso_with_offset(self, value: datetime | None) -> str | None:
        return _iso(value)


class ReviewResult(BaseModel):
    session_id: str
    attempt_id: str
    candidate_id: str
    state: str
    review_status: ReviewStatus
    final: bool = Field(
        description="true once an outcome is final, and still true under appeal; until then `outcome` is null"
    )
    outcome: Outcome | None
    version: int | None = Field(
        description="which final outcome `outcome` is: 1 for the first, 2 after one appeal, ...; null until final"
    )
    under_appeal: bool = Field(
        description="an officer reopened the review: `outcome` (and all else) is the last final version as it "
        "was, until the appeal's new outcome is final"
    )
    decided_at: datetime | None
    risk_score: float | None
    flags: list[FlagResult] = Field(
        description="the detectors' flags; once final, also the flags reviewers added, with every decision"
    )
    comments: list[Comment] = Field(
        description="the reviewers' notes on the outcome that they shared with the platform; empty until final"
    )
    history: list[OutcomeVersion] = Field(description="every final outcome, oldest first, and each reopening")

    @field_serializer("decided_at")
    def _iso_with_offset(self, value: datetime | None) -> str | None:
        return _iso(value)


class FlagWithEvidence(FlagResult):
    evidence_urls: list[str] = Field(description="presigned URLs of the evidence frames; they expire")


class PlatformReview(ReviewResult):
    """The review as `GET /v1/sessions/{id}/review` returns it: each flag with its evidence frames."""

    flags: list[FlagWithEvidence]  # type: ignore[assignment]


def flags_with_decisions(db: Session, session_id: str) -> list[tuple[FlagSegment, FlagDecision | None]]:
    """A session's flags in time order, each with its reviewer decision (None while undecided)."""
    rows = db.execute(
        select(FlagSegment, FlagDecision)
        .outerjoin(FlagDecision, FlagDecision.segment_id == FlagSegment.id)
        .where(FlagSegment.session_id == session_id)
        .order_by(FlagSegment.start_ms, FlagSegment.kind)
    ).all()
    return [(seg, decision) for seg, decision in rows]


def outcome_versions(db: Session, session_id: str) -> list[ReviewOutcome]:
    """A session's final outcomes, oldest first."""
    return list(
        db.scalars(select(ReviewOutcome).where(ReviewOutcome.session_id == session_id).order_by(ReviewOutcome.version))
    )


def outcome_history(versions: list[ReviewOutcome]) -> list[OutcomeVersion]:
    return [
        OutcomeVersion(
            version=v.version,
            outcome=Outcome(v.outcome),
            decided_by=v.decided_by,
            decided_by_system=v.decided_by_system,
            second_by=v.second_by,
            decided_at=v.decided_at,
            reopened_by=v.reopened_by,
            reopen_reason=v.reopen_reason,
            reopened_at=v.reopened_at,
        )
        for v in versions
    ]


def review_result(db: Session, session: ExamSession) -> ReviewResult:
    review = db.get(SessionReview, session.id)
    versions = outcome_versions(db, session.id)
    history = outcome_history(versions)
    final = review is not None and review.status == ReviewStatus.FINAL
    appealed = versions[-1] if versions and versions[-1].reopened_at is not None else None
    if not final and appealed is not None and appealed.platform_result is not None:
        kept = ReviewResult.model_validate(appealed.platform_result)  # the last final version, as it was
        return kept.model_copy(update={"state": session.state, "under_appeal": True, "history": history})
    rows = flags_with_decisions(db, session.id)
    if not final:  # nothing a reviewer wrote leaves before the outcome is final (module docstring)
        rows = [(seg, None) for seg, _ in rows if seg.source == FlagSource.DETECTOR]
    comments = []
    if final and review is not None:  # only what the reviewers shared (module docstring)
        if review.note_shared:
            comments.append(Comment(by=review.reviewer_id, role="reviewer", text=review.note))
        if review.second_note is not None and review.second_note_shared:
            comments.append(Comment(by=review.second_reviewer_id, role="second_reviewer", text=review.second_note))
    return ReviewResult(
        session_id=session.id,
        attempt_id=session.attempt_id,
        candidate_id=session.candidate_id,
        state=session.state,
        review_status=ReviewStatus(review.status) if review else ReviewStatus.NOT_STARTED,
        final=final,
        outcome=Outcome(review.outcome) if final and review else None,
        version=versions[-1].version if final and versions else None,
        under_appeal=False,
        decided_at=review.finalised_at if final and review else None,
        risk_score=session.risk_score,
        flags=[
            FlagResult(
                id=seg.id,
                kind=added_flag_kind(seg.kind),
                start_s=seg.start_ms / 1000,
                end_s=seg.end_ms / 1000,
                source=FlagSource(seg.source),
                score=seg.score,
                decision=Decision(decision.decision) if decision else None,
                note=decision.note if decision and decision.note_shared else None,
            )
            for seg, decision in rows
        ],
        comments=comments,
        history=history,
    )
