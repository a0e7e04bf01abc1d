"""Giving an exam a policy, whoever does it (an officer in the review UI, the platform through the API): record it
as the exam's next version, audit the change with the policy before and after, and queue the re-scoring of the
exam's processed sessions that may be re-scored (`core.rescoring`). One transaction, the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.exam_policy import ExamPolicy, PolicyInvalid
from core.rescoring import SCORED_STATES, NotRescored, queue_rescores, why_not_rescored
from core.tables import Exam, ExamPolicyVersion, ExamSession, SessionReview


@dataclass(frozen=True)
class SessionLeft:
    """A session of the exam that the change leaves as it is, and why."""

    session_id: str
    candidate_id: str
    attempt_id: str
    why: NotRescored


@dataclass(frozen=True)
class PolicyApplied:
    version: int  # the exam's policy version now (0: it never had one recorded)
    changed: bool  # whether this was a new version; an unchanged policy only re-scores what is not yet
    queued: int  # sessions whose re-scoring was queued (those with one already queued are not counted)
    not_rescored: list[SessionLeft]


def current_version(db: Session, exam_id: str) -> int:
    """The exam's latest policy version; 0 while its policy was never set through the UI or the API."""
    return int(db.scalar(select(func.max(ExamPolicyVersion.version)).where(ExamPolicyVersion.exam_id == exam_id)) or 0)


def policy_history(db: Session, exam_id: str) -> list[ExamPolicyVersion]:
    """The exam's policy versions, newest first."""
    stmt = select(ExamPolicyVersion).where(ExamPolicyVersion.exam_id == exam_id)
    return list(db.scalars(stmt.order_by(ExamPolicyVersion.version.desc())))


def stored_policy(exam: Exam) -> ExamPolicy | None:
    """The exam's policy as stored; None when what is stored cannot be applied (a hand edit gone wrong)."""
    try:
        return ExamPolicy.from_json(exam.policy)
    except PolicyInvalid:
        return None


def scored_sessions(db: Session, exam_id: str) -> list[tuple[ExamSession, str | None]]:
    """The exam's live sessions that have flags from a processing run, with their review status (None: no
    outcome set), most recently processed first."""
    rows = db.execute(
        select(ExamSession, SessionReview.status)
        .outerjoin(SessionReview, SessionReview.session_id == ExamSession.id)
        .where(
            ExamSession.exam_id == exam_id,
            ExamSession.state.in_(SCORED_STATES),
            ExamSession.deleted_at.is_(None),
        )
        .order_by(ExamSession.processed_at.desc(), ExamSession.id)
    ).all()
    return [(session, status) for session, status in rows]


def flags_differ(before: ExamPolicy, after: ExamPolicy) -> bool:
    """Whether `after` may raise other flags than `before`: what the segmentation reads differs."""
    was, now = before.to_json(), after.to_json()
    return any(was[name] != now[name] for name in ("sensitivity", "kinds", "looking_away"))


def apply_policy(
    db: Session, exam: Exam, policy: ExamPolicy, actor: str, now: datetime, *, ip: str | None = None
) -> PolicyApplied:
    """Make `policy` the exam's (a new version when it differs from the current one) and queue the re-scoring of
    every processed session that may be re-scored; the others are returned with why they are left."""
    before: dict[str, Any] = dict(exam.policy or {})
    current = stored_policy(exam)
    changed = current is None or current.to_json() != policy.to_json()
    version = current_version(db, exam.id)
    if changed:
        version += 1
        exam.policy = policy.to_json()
        db.add(
            ExamPolicyVersion(exam_id=exam.id, version=version, policy=exam.policy, changed_by=actor, changed_at=now)
        )
    eligible: list[str] = []
    left: list[SessionLeft] = []
    # A change that raises no other flags (allowed aids, auto-clear) re-scores nothing; re-applying the same policy
    # still re-scores what is not yet, as documented on `PolicyApplied`.
    rescoring = current is None or not changed or flags_differ(current, policy)
    for session, status in scored_sessions(db, exam.id) if rescoring else []:
        why = why_not_rescored(session.state, status)
        if why is None:
            eligible.append(session.id)
        else:
            left.append(SessionLeft(session.id, session.candidate_id, session.attempt_id, why))
    queued = queue_rescores(db, eligible)
    audit.record(
        db, actor, "exam_policy_applied", at=now, tenant_id=exam.tenant_id, ip=ip, exam_id=exam.id,
        exam=exam.external_id, version=version, changed=changed, before=before, after=policy.to_json(),
        rescore_queued=queued, not_rescored=len(left),
    )  # fmt: skip
    return PolicyApplied(version, changed, queued, left)
