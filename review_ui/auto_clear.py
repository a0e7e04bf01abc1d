"""Auto-clear: an exam may let the system finalise as Clean the sessions its detectors found nothing in, and send a
share of them to reviewers instead, as a quality-control sample (issue 20; the policy's `auto_clear` field,
`core.exam_policy`).

Reviewers are the scarce resource, but a false Clean costs integrity, so a session is cleared only when nobody
could have had anything to look at:

- Eligible: processed and never claimed (state `processed`), no outcome, not already drawn as a QC sample, a risk
  score at most the policy's `max_risk`, no flag a reviewer added, and no processing or re-scoring job open on it
  (a re-scoring under a changed policy may yet flag it). The risk score is where "no flags above a threshold" is
  read: it combines each flag's score, length and its kind's weight in the exam's policy
  (`pipelines.segments.risk_score`), so `max_risk` 0 (the default) clears only sessions with no flag that counts,
  and a higher one also clears sessions with only brief, weak flags, whose flags stay undecided in the outcome.
- The draw: HMAC-SHA256 of the session id under a key derived from the deployment's secrets key, its first 64 bits
  as a fraction of 2**64: uniform on [0, 1), the same on every run, and unknowable to a candidate without the key.
  Below `qc_sample_rate` the session is a QC sample: it stays in the queue for reviewers with a badge, audited as
  `auto_clear_qc_sample`. Otherwise the system actor `system:auto_clear` clears it (`decisions.clear_by_system`):
  an outcome audited with the thresholds and the draw, the next outcome version, and the platform's webhook, as
  for a reviewer's Clean.
- Each session is taken with one conditional UPDATE that repeats the whole eligibility test, in a transaction of
  its own: a reviewer claiming it meanwhile, or a sweep in another process, wins or loses whole, and a session is
  decided once. A second sweep finds nothing to do.

`proctor serve` runs the sweep on a thread (`AutoClearer`) every PROCTOR_AUTO_CLEAR_INTERVAL_S, and
`proctor review auto-clear` runs one. The pipelines may not import the review UI, so the periodic sweep is also
what picks sessions up once processing ends.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import ColumnElement, exists, false, select, update
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import utcnow
from core.exam_policy import ExamPolicy
from core.policy_changes import stored_policy
from core.states import SessionState
from core.tables import Exam, ExamSession, FlagSegment, Job, SessionReview
from core.vocabulary import OPEN_JOB_STATES, FlagSource
from review_ui.decisions import clear_by_system

log = logging.getLogger(__name__)

AUTO_CLEAR_ACTOR: Final = "system:auto_clear"
DRAW_KEY_LABEL: Final = b"proctor auto-clear QC draw v1"
SESSIONS_PER_EXAM: Final = 500  # per sweep: the next sweep goes on where this one stopped
Decided = Literal["cleared", "qc_sample"]


def qc_draw_key(secrets_key: bytes | None) -> bytes:
    """The draw's key, derived from the deployment's secrets key (PROCTOR_SECRETS_KEY). Without one the key is fixed:
    the draw stays reproducible and unbiased, but whoever knows a session's id can work it out."""
    return hmac.new(secrets_key or b"", DRAW_KEY_LABEL, hashlib.sha256).digest()


def qc_draw(key: bytes, session_id: str) -> float:
    """The session's draw in [0, 1): a QC sample when below the exam's `qc_sample_rate`."""
    digest = hmac.new(key, session_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def flagged_kinds(policy: ExamPolicy) -> list[str]:
    return sorted(kind.value for kind, settings in policy.kinds.items() if settings.enabled)


def eligible(policy: ExamPolicy) -> list[ColumnElement[bool]]:
    """WHERE clauses on `ExamSession` that keep the sessions `policy`'s auto-clear may decide."""
    added = exists().where(FlagSegment.session_id == ExamSession.id, FlagSegment.source != FlagSource.DETECTOR.value)
    reviewed = exists().where(SessionReview.session_id == ExamSession.id)
    busy = exists().where(Job.session_id == ExamSession.id, Job.state.in_(OPEN_JOB_STATES))
    return [
        ExamSession.state == SessionState.PROCESSED.value,
        ExamSession.claimed_by.is_(None),
        ExamSession.qc_sample == false(),
        ExamSession.risk_score.is_not(None),
        ExamSession.risk_score <= policy.auto_clear.max_risk,
        ~added,
        ~reviewed,
        ~busy,
    ]


@dataclass(frozen=True)
class AutoClearTally:
    exams: int  # exams with auto-clear on and sessions waiting
    cleared: int
    qc_sampled: int
    lost: int  # eligible when listed, but claimed (or decided by another sweep) before this one took it


def auto_clear_sweep(
    db_factory: sessionmaker[Session], now: datetime, draw_key: bytes, *, per_exam: int = SESSIONS_PER_EXAM
) -> AutoClearTally:
    """Decide every eligible session of the exams with auto-clear on, each in a transaction of its own."""
    with db_factory() as db:
        waiting = select(ExamSession.exam_id).where(
            ExamSession.state == SessionState.PROCESSED.value, ExamSession.qc_sample == false()
        )
        exams = [
            (exam.id, policy)
            for exam in db.scalars(select(Exam).where(Exam.id.in_(waiting)).order_by(Exam.id))
            if (policy := stored_policy(exam)) is not None and policy.auto_clear.enabled
        ]
        work = [
            (session_id, policy)
            for exam_id, policy in exams
            for session_id in db.scalars(
                select(ExamSession.id)
                .where(ExamSession.exam_id == exam_id, *eligible(policy))
                .order_by(ExamSession.processed_at, ExamSession.id)
                .limit(per_exam)
            )
        ]
    cleared = sampled = lost = 0
    for session_id, policy in work:
        with db_factory() as db:
            decided = decide(db, session_id, policy, now, draw_key)
        cleared += decided == "cleared"
        sampled += decided == "qc_sample"
        lost += decided is None
    return AutoClearTally(len(exams), cleared, sampled, lost)


def decide(db: Session, session_id: str, policy: ExamPolicy, now: datetime, draw_key: bytes) -> Decided | None:
    """Clear the session, or mark it a QC sample, and commit; returns "cleared", "qc_sample", or None when it was
    no longer eligible when taken."""
    rules = policy.auto_clear
    draw = qc_draw(draw_key, session_id)
    sample = draw < rules.qc_sample_rate
    marked = {"qc_sample": True} if sample else {"updated_at": now}  # a sample stays in the queue, for reviewers
    taken = db.execute(update(ExamSession).where(ExamSession.id == session_id, *eligible(policy)).values(**marked))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        return None
    session = db.get(ExamSession, session_id)
    assert session is not None  # just taken
    grounds = {
        "max_risk": rules.max_risk, "qc_sample_rate": rules.qc_sample_rate, "draw": draw,
        "risk_score": session.risk_score, "kinds_flagged": flagged_kinds(policy),
    }  # fmt: skip
    if sample:
        audit.record(
            db, AUTO_CLEAR_ACTOR, "auto_clear_qc_sample", at=now, tenant_id=session.tenant_id, session_id=session.id,
            grounds=grounds,
        )  # fmt: skip
    else:
        clear_by_system(db, session, AUTO_CLEAR_ACTOR, now, grounds)
    db.commit()
    return "qc_sample" if sample else "cleared"


class AutoClearer:
    """Runs the sweep every `interval_s` on a thread (`run`) until `stop` is set; a sweep that fails is logged and
    the next one tries again."""

    def __init__(self, db: sessionmaker[Session], draw_key: bytes, interval_s: float) -> None:
        self.db, self.draw_key, self.interval_s = db, draw_key, interval_s
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                tally = auto_clear_sweep(self.db, utcnow(), self.draw_key)
            except Exception:  # keep the thread alive across a database hiccup; nothing was half decided
                log.exception("the auto-clear sweep failed; the next one tries again")
            else:
                if tally.cleared or tally.qc_sampled:
                    log.info(
                        "auto-clear swept",
                        extra={"cleared": tally.cleared, "qc_sampled": tally.qc_sampled, "lost": tally.lost},
                    )
            self.stop.wait(self.interval_s)
