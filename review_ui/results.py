"""What a platform learns of a review: the outcome, the per-flag decisions and the reviewers' comments.

One JSON shape, used by `GET /v1/sessions/{id}/review` and by the signed webhook, so a platform parses
one thing. Reviewers appear by an opaque id, not by name: the platform needs who-decided for appeals,
not our staff list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ingest.db import ExamSession, FlagDecision, FlagSegment, SessionReview

FINAL = "final"


def flags_with_decisions(db: Session, session_id: str) -> list[tuple[FlagSegment, FlagDecision | None]]:
    """A session's flags in time order, each with its reviewer decision (None while undecided)."""
    rows = db.execute(
        select(FlagSegment, FlagDecision)
        .outerjoin(FlagDecision, FlagDecision.segment_id == FlagSegment.id)
        .where(FlagSegment.session_id == session_id)
        .order_by(FlagSegment.start_ms, FlagSegment.kind)
    ).all()
    return [(seg, decision) for seg, decision in rows]


def review_result(db: Session, session: ExamSession) -> dict[str, Any]:
    review = db.get(SessionReview, session.id)
    rows = flags_with_decisions(db, session.id)
    final = review is not None and review.status == FINAL
    comments = []
    if review is not None:
        comments.append({"by": review.reviewer_id, "role": "reviewer", "text": review.note})
        if review.second_note is not None:
            comments.append({"by": review.second_reviewer_id, "role": "second_reviewer", "text": review.second_note})
    return {
        "session_id": session.id,
        "attempt_id": session.attempt_id,
        "candidate_id": session.candidate_id,
        "state": session.state,
        "review_status": review.status if review else "not_started",
        "final": final,
        "outcome": review.outcome if final and review else None,
        "decided_at": review.finalised_at.isoformat() if final and review and review.finalised_at else None,
        "risk_score": session.risk_score,
        "flags": [
            {
                "id": seg.id,
                "kind": seg.kind,
                "start_s": seg.start_ms / 1000,
                "end_s": seg.end_ms / 1000,
                "source": seg.source,
                "score": seg.score,
                "decision": decision.decision if decision else None,
                "note": decision.note if decision else None,
            }
            for seg, decision in rows
        ],
        "comments": comments,
    }
