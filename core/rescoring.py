"""Re-scoring a processed session under another policy, as the stages share it: what a flag is for the purpose
of comparing two scorings, which sessions may be re-scored, and the seam to the pipelines' re-scorer.

A flag survives a re-scoring when the new scoring raises the same kind over exactly the same span: its row,
and the reviewer's decision on it, are kept. Any other new flag is added undecided, and any old one that is not
raised again is removed, its decision recorded with the new flag version (`FlagVersion.dropped_decisions`).
A policy change that only drops flags (a kind turned off, a longer minimum) therefore keeps every decision on
the flags that remain; one that moves a flag's edges (another tolerance) makes it a new flag, because the
reviewer decided on what they saw between the old edges.

A session whose review is final is never re-scored: its outcome went to the platform on those flags. It is
listed "not re-scored: final (reopen to re-score)". A Rules Violation awaiting its second reviewer is not
re-scored either: its flags are locked under an outcome already set.

The review UI previews a change through `Rescorer` (which it may not import from the pipelines; `proctor.wiring`
injects the pipelines' one) and queues the apply as `RESCORE` jobs that `proctor worker` runs: a re-scoring
reads the stored signals, never the recording, but still costs 1-2 s per hour of recording on the 2-core
development machine (`benchmarks/review_ui.py`: 156 s for 100 one-hour sessions on one worker), so an exam's
sessions are spread over the workers, survive a restart and are retried, rather than held in one request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.enrolments import latest_enrolment
from core.exam_policy import ExamPolicy
from core.states import SessionState
from core.tables import Accommodation, ExamSession, Job, SessionReview
from core.vocabulary import OPEN_JOB_STATES, FlagKind, JobKind, MediaKind, MediaState, ReviewStatus

RESCORE_MAX_ATTEMPTS: Final = 3
SCORED_STATES: Final = (SessionState.PROCESSED.value, SessionState.IN_REVIEW.value, SessionState.REVIEWED.value)
"""Sessions with flags from a processing run: the ones a policy change concerns."""


@dataclass(frozen=True, order=True)
class FlagSpan:
    """A detector flag as re-scoring compares them: its kind and its span."""

    kind: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class FlagDiff:
    """Two scorings of one session compared: flags kept (same kind and span), added and removed."""

    kept: tuple[FlagSpan, ...]
    added: tuple[FlagSpan, ...]
    removed: tuple[FlagSpan, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def diff_flags(before: Iterable[FlagSpan], after: Iterable[FlagSpan]) -> FlagDiff:
    """Which of `before` survive in `after`, which are new and which are gone (a span flagged twice counts twice)."""
    old, new = Counter(before), Counter(after)
    kept, added, removed = old & new, new - old, old - new
    return FlagDiff(tuple(sorted(kept.elements())), tuple(sorted(added.elements())), tuple(sorted(removed.elements())))


@dataclass(frozen=True)
class KindChange:
    """One flag kind over the sessions a change would re-score: flags now, after, added and removed."""

    kind: str
    before: int
    after: int
    added: int
    removed: int


def changes_per_kind(diffs: Iterable[FlagDiff]) -> list[KindChange]:
    """The preview's table: every detector kind, in `FlagKind`'s order, summed over the sessions' diffs."""
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    added: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    for diff in diffs:
        for flag in diff.kept:
            before[flag.kind] += 1
            after[flag.kind] += 1
        for flag in diff.added:
            after[flag.kind] += 1
            added[flag.kind] += 1
        for flag in diff.removed:
            before[flag.kind] += 1
            removed[flag.kind] += 1
    return [KindChange(k.value, before[k], after[k], added[k], removed[k]) for k in FlagKind]


class NotRescored(StrEnum):
    """Why a session of the exam is left as it is."""

    FINAL = "final (reopen to re-score)"
    AWAITING_SECOND = "outcome awaiting a second review (once it is returned or reopened it can be re-scored)"
    NOT_PROCESSED = "not processed yet (it is scored under the current policy when it is)"


def why_not_rescored(state: str, review_status: str | None) -> NotRescored | None:
    """None when a session in `state`, with its review at `review_status` (None: no outcome set), may be
    re-scored; else why not."""
    if state == SessionState.REVIEWED.value or review_status == ReviewStatus.FINAL.value:
        return NotRescored.FINAL
    if review_status == ReviewStatus.AWAITING_SECOND.value:
        return NotRescored.AWAITING_SECOND
    if state not in SCORED_STATES:
        return NotRescored.NOT_PROCESSED
    return None


def review_status(db: Session, session_id: str) -> str | None:
    review = db.get(SessionReview, session_id)
    return None if review is None else review.status


@dataclass(frozen=True)
class StoredRun:
    """What re-scoring a session reads: its processing run's stored signals, how long the recording is, and the
    candidate's enrolment template (for identity flags), if any."""

    session_id: str
    results_prefix: str
    duration_ms: int
    enrolment: tuple[float, ...] | None


def stored_run(db: Session, session: ExamSession) -> StoredRun | None:
    """The session's stored run; None when it has none to re-score (never processed, or erased)."""
    webcam = next((m for m in session.media if m.kind == MediaKind.WEBCAM and m.state == MediaState.COMPLETE), None)
    probe = None if webcam is None else webcam.video_probe
    if session.results_prefix is None or probe is None or session.deleted_at is not None:
        return None
    enrolled = latest_enrolment(db, session.tenant_id, session.candidate_id, session_id=session.id)
    enrolment = None if enrolled is None else tuple(enrolled.descriptor)
    return StoredRun(session.id, session.results_prefix, round(probe.duration_s * 1000), enrolment)


class Rescorer(Protocol):
    """The flags a session's stored signals give under `policy` (its accommodation already applied): the
    pipelines' segmenter, without decoding (`pipelines.rescore`)."""

    def __call__(self, run: StoredRun, policy: ExamPolicy) -> list[FlagSpan]: ...


def accommodated(policy: ExamPolicy, accommodation: Accommodation | None) -> ExamPolicy:
    """The exam's policy as it applies to one attempt: with the kinds its accommodation turns off."""
    if accommodation is None:
        return policy
    return policy.without(FlagKind(kind) for kind in accommodation.kinds_off if kind in set(FlagKind))


def policy_for_session(db: Session, session: ExamSession) -> ExamPolicy:
    """What a session is scored under, at processing and at every re-scoring: its exam's current policy with
    the attempt's accommodation."""
    return accommodated(ExamPolicy.from_json(session.exam.policy), db.get(Accommodation, session.id))


def queue_rescores(db: Session, session_ids: Sequence[str]) -> int:
    """Queue a `RESCORE` job for each session that has none open (one queued earlier re-scores under whatever
    policy is current when it runs); returns how many were queued. Unlike `core.jobs.queue_job`, the session's
    state does not move: it stays processed, or in review."""
    if not session_ids:
        return 0
    open_already = set(
        db.scalars(
            select(Job.session_id).where(
                Job.session_id.in_(session_ids), Job.kind == JobKind.RESCORE.value, Job.state.in_(OPEN_JOB_STATES)
            )
        )
    )
    queued = [sid for sid in dict.fromkeys(session_ids) if sid not in open_already]
    db.add_all(Job(session_id=sid, kind=JobKind.RESCORE.value, max_attempts=RESCORE_MAX_ATTEMPTS) for sid in queued)
    db.flush()
    return len(queued)
