"""Re-score a processed session from its stored signals under its exam's current policy: a `RESCORE` job.

No decoding: the signals the processing run stored (`signals.npz`, and `descriptors.npz` for identity flags)
go through the same last step as processing (`pipelines.analysis.segment_session`) under the exam's policy
with the attempt's accommodation, by this code: the session, its flags and the audit entry carry this
`PIPELINE_VERSION`, whichever version processed it. What changes is published as the session's next flag version,
by the rules of `core.rescoring`: flags of the same kind and span keep their rows and their decisions; new ones come in
undecided (with the evidence frames of a removed flag of theirs whose peak they cover, since no frame can be
cut without decoding); removed ones go, and their decisions are kept in the version and the audit trail.

The publishing transaction first re-checks that the session may still be re-scored (a reviewer may have made
the outcome final meanwhile, or the session may have been processed again) and marks the job done, fenced
by its lease (`finish_rescore_job`); unlike a processing job, a re-scoring never moves the session's state.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import utcnow
from core.policy_changes import current_version
from core.rescoring import (
    FlagDiff,
    FlagSpan,
    NotRescored,
    StoredRun,
    diff_flags,
    policy_for_session,
    review_status,
    stored_run,
    why_not_rescored,
)
from core.tables import ExamSession, FlagDecision, FlagSegment, FlagVersion, Job
from core.vocabulary import FlagSource, JobState
from detectors import AwayConfig
from pipelines.analysis import PIPELINE_VERSION, segment_session
from pipelines.jobs import ClaimedJob, LeaseLost
from pipelines.process import NotProcessable, load_signals, review_priority
from pipelines.segments import ExamPolicy, Segment
from storage.object_store import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)
RESCORE_ACTOR = "system:rescore"


@dataclass(frozen=True)
class StoredSignalsRescorer:
    """`core.rescoring.Rescorer` over the object store: the flags a session's stored signals give under a policy."""

    store: ObjectStore
    away: AwayConfig = field(default_factory=AwayConfig)

    def __call__(self, run: StoredRun, policy: ExamPolicy) -> list[FlagSpan]:
        return [_span(segment) for segment in self.segments(run, policy)[0]]

    def segments(self, run: StoredRun, policy: ExamPolicy) -> tuple[list[Segment], float]:
        signals = load_signals(self.store, run.results_prefix)
        enrolment = None if run.enrolment is None else np.asarray(run.enrolment, np.float32)
        return segment_session(signals, policy, self.away, duration_ms=run.duration_ms, enrolment=enrolment)


@dataclass(frozen=True)
class RescoreOutcome:
    session_id: str
    why_not: NotRescored | None  # None: re-scored
    diff: FlagDiff | None = None
    version: int | None = None  # the new flag version; None when the flags did not change


def _span(flag: Segment | FlagSegment) -> FlagSpan:
    return FlagSpan(str(flag.kind), flag.start_ms, flag.end_ms)


def finish_rescore_job(db: Session, job: ClaimedJob, worker_id: str) -> None:
    """Mark a re-scoring job done in the caller's transaction, or raise `LeaseLost` if this worker no longer holds
    it: `JobQueue.complete`'s fence, without its move of the session from processing to processed (a re-scoring
    never moved it there)."""
    done: Any = db.execute(
        update(Job)
        .where(Job.id == job.id, Job.lease_owner == worker_id, Job.state == JobState.RUNNING.value)
        .values(state=JobState.DONE.value, lease_owner=None, updated_at=utcnow())
    )
    if done.rowcount != 1:
        db.rollback()
        raise LeaseLost(f"worker {worker_id} no longer holds job {job.id}: its lease expired and it was taken over")


def rescore_session(
    db: sessionmaker[Session],
    store: ObjectStore,
    session_id: str,
    *,
    on_publish: Callable[[Session], None] | None = None,
    away: AwayConfig | None = None,
) -> RescoreOutcome:
    """Re-score one session (see the module's docstring). ``on_publish`` runs first in the publishing
    transaction, as in `pipelines.process.process_session`; it also runs for a session left as it is, so that
    its job ends."""
    with db() as s:
        session = s.get(ExamSession, session_id)
        if session is None:
            raise NotProcessable(f"no session {session_id!r} to re-score")
        why = why_not_rescored(session.state, review_status(s, session.id))
        run = stored_run(s, session) if why is None else None
        policy = policy_for_session(s, session)
        policy_version = current_version(s, session.exam_id)
    if why is not None or run is None:
        return _leave(db, session_id, why or NotRescored.NOT_PROCESSED, on_publish)
    try:
        segments, risk = StoredSignalsRescorer(store, away or AwayConfig()).segments(run, policy)
    except ObjectNotFound:
        raise NotProcessable(
            f"session {session_id}: its stored signals under {run.results_prefix} are gone; process it again to "
            "re-score it"
        ) from None
    with db() as s:
        if on_publish is not None:
            on_publish(s)  # first: the job row stays locked until this commits
        session = s.get(ExamSession, session_id)
        why = None if session is None else why_not_rescored(session.state, review_status(s, session_id))
        if session is None or why is not None or session.results_prefix != run.results_prefix:
            s.commit()  # finalised or processed again meanwhile: those flags stand
            return RescoreOutcome(session_id, why or NotRescored.NOT_PROCESSED)
        diff, version = _publish(s, session, segments, policy_version)
        session.risk_score, session.review_priority = risk, review_priority(risk).value
        session.pipeline_version = PIPELINE_VERSION  # its flags are this pipeline's now, from the same signals
        s.commit()
    log.info(
        "session re-scored",
        extra={"session_id": session_id, "added": len(diff.added), "removed": len(diff.removed), "version": version},
    )
    return RescoreOutcome(session_id, None, diff, version)


def _leave(
    db: sessionmaker[Session], session_id: str, why: NotRescored, on_publish: Callable[[Session], None] | None
) -> RescoreOutcome:
    with db() as s:
        if on_publish is not None:
            on_publish(s)
        s.commit()
    log.info("session not re-scored", extra={"session_id": session_id, "why": why.value})
    return RescoreOutcome(session_id, why)


def _publish(
    s: Session, session: ExamSession, segments: list[Segment], policy_version: int
) -> tuple[FlagDiff, int | None]:
    """Swap the session's detector flags for `segments` by the survival rule; the new flag version, if any."""
    rows = list(
        s.scalars(
            select(FlagSegment).where(
                FlagSegment.session_id == session.id, FlagSegment.source == FlagSource.DETECTOR.value
            )
        )
    )
    diff = diff_flags([_span(r) for r in rows], [_span(seg) for seg in segments])
    old: defaultdict[FlagSpan, list[FlagSegment]] = defaultdict(list)
    for row in rows:
        old[_span(row)].append(row)
    new: defaultdict[FlagSpan, list[Segment]] = defaultdict(list)
    for seg in segments:
        new[_span(seg)].append(seg)
    for span in diff.kept:  # same flag: the row (and its decision) stays, with this scoring's numbers
        row, seg = old[span].pop(), new[span].pop()
        row.score, row.peak_ms, row.details = seg.score, seg.peak_ms, dict(seg.details) or None
        row.pipeline_version = PIPELINE_VERSION
    removed = [old[span].pop() for span in diff.removed]
    decisions = {
        d.segment_id: d
        for d in s.scalars(select(FlagDecision).where(FlagDecision.segment_id.in_([r.id for r in removed])))
    }
    dropped = [
        {
            "kind": row.kind, "start_ms": row.start_ms, "end_ms": row.end_ms, "decision": decisions[row.id].decision,
            "note": decisions[row.id].note, "reviewer_id": decisions[row.id].reviewer_id,
        }
        for row in removed
        if row.id in decisions
    ]  # fmt: skip
    versions = rows[0].detector_versions if rows else {}
    for span in diff.added:
        seg = new[span].pop()
        s.add(
            FlagSegment(
                session_id=session.id, kind=seg.kind.value, start_ms=seg.start_ms, end_ms=seg.end_ms,
                score=seg.score, peak_ms=seg.peak_ms, evidence_keys=_evidence_of(seg, removed),
                detector_versions=versions, pipeline_version=PIPELINE_VERSION,
                details=dict(seg.details) or None,
            )
        )  # fmt: skip
    for row in removed:
        if row.id in decisions:
            s.delete(decisions[row.id])
        s.delete(row)
    if not diff.changed:
        return diff, None
    latest = s.scalar(select(func.max(FlagVersion.version)).where(FlagVersion.session_id == session.id))
    version = (latest or 1) + 1
    s.add(
        FlagVersion(
            session_id=session.id, version=version, policy_version=policy_version or None, added=len(diff.added),
            removed=len(diff.removed), kept=len(diff.kept), dropped_decisions=dropped, created_at=utcnow(),
        )
    )  # fmt: skip
    audit.record(
        s, RESCORE_ACTOR, "flags_rescored", at=utcnow(), tenant_id=session.tenant_id, session_id=session.id,
        version=version, policy_version=policy_version or None, pipeline_version=PIPELINE_VERSION,
        added=[_json(f) for f in diff.added],
        removed=[_json(f) for f in diff.removed], kept=len(diff.kept),
        dropped_decisions=[{k: v for k, v in d.items() if k != "note"} for d in dropped],
    )  # fmt: skip
    return diff, version


def _evidence_of(segment: Segment, removed: list[FlagSegment]) -> list[str]:
    """The evidence frames of a removed flag of the same kind whose peak the new flag covers (its peak frame is
    inside the new flag); none otherwise: a frame cannot be cut from the recording without decoding it."""
    for row in removed:
        if row.kind == segment.kind.value and segment.start_ms <= row.peak_ms < segment.end_ms and row.evidence_keys:
            return list(row.evidence_keys)
    return []


def _json(flag: FlagSpan) -> dict[str, Any]:
    return {"kind": flag.kind, "start_ms": flag.start_ms, "end_ms": flag.end_ms}
