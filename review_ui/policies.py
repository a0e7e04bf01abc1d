"""Exam policies as integrity officers see them: the policy form, the preview of a change, what applying it did,
and per-attempt accommodations. Plain functions; `review_ui.policy_pages` holds the routes.

The form edits what an officer tunes (each kind on or off and its minimum duration in seconds, the
sensitivity, the looking-away tolerances, the allowed aids, the auto-clear) and keeps the rest of the current
policy as it is (thresholds, merge gaps, weights: the API sets those). A preview re-scores the exam's sessions
that applying would re-score, from their stored signals through the injected `Rescorer`, and compares with their
flags now. It costs 1-2 s per hour of recording (24 s for 20 one-hour sessions in `benchmarks/review_ui.py`), so
it covers the `PREVIEW_SESSIONS` most recently processed and says so when there are more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from core import audit
from core.exam_policy import MAX_DURATION_MS, TOLERANCE_FIELDS, AutoClear, AwayTolerances, ExamPolicy, PolicyInvalid
from core.policy_changes import SessionLeft, current_version, scored_sessions
from core.rescoring import (
    FlagSpan,
    KindChange,
    Rescorer,
    accommodated,
    changes_per_kind,
    diff_flags,
    queue_rescores,
    review_status,
    stored_run,
    why_not_rescored,
)
from core.tables import Accommodation, ExamSession, FlagSegment, FlagVersion, Job, User
from core.vocabulary import OPEN_JOB_STATES, FlagKind, FlagSource, JobKind, JobState
from review_ui.decisions import Actor
from storage.object_store import ObjectNotFound

PREVIEW_SESSIONS: Final = 20
MAX_NOTE: Final = 2000


def kind_label(kind: str) -> str:
    return kind.replace("_", " ")


def _seconds(form: Mapping[str, str], name: str, label: str, *, high: float) -> float | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise PolicyInvalid(label, f"must be a number from 0 to {high:g}", raw) from None
    if not 0 <= value <= high:
        raise PolicyInvalid(label, f"must be a number from 0 to {high:g}", raw)
    return value


def policy_from_form(form: Mapping[str, str], current: ExamPolicy) -> ExamPolicy:
    """The policy the officer's form describes, over `current` for what the form does not show; raises
    `PolicyInvalid` naming the field as the form labels it (``no face: minimum duration (s)``)."""
    sensitivity = _seconds(form, "sensitivity", "sensitivity", high=10.0)
    if sensitivity is None:
        raise PolicyInvalid("sensitivity", "is required: 1 is the default, 2 flags episodes half as long", "")
    kinds = {}
    for kind in FlagKind:
        label = f"{kind_label(kind)}: minimum duration (s)"
        seconds = _seconds(form, f"{kind.value}.min_duration_s", label, high=MAX_DURATION_MS / 1000)
        if seconds is None:
            raise PolicyInvalid(label, f"is required: a number from 0 to {MAX_DURATION_MS // 1000}", "")
        enabled = form.get(f"{kind.value}.enabled") == "on"
        kinds[kind] = replace(current.kinds[kind], enabled=enabled, min_duration_ms=round(seconds * 1000))
    tolerances = {}
    for name in TOLERANCE_FIELDS:
        label = f"looking away: {name.replace('_deg', ' (degrees)').replace('gaze_h', 'eye gaze')}"
        tolerances[name] = _seconds(form, f"looking_away.{name}", label, high=180.0)
        if tolerances[name] == 0:
            raise PolicyInvalid(label, "must be more than 0, or left empty for the detectors' default", "0")
    return ExamPolicy(
        sensitivity=sensitivity,
        kinds=kinds,
        looking_away=AwayTolerances(**tolerances),
        allowed_aids=form.get("allowed_aids", ""),
        auto_clear=_auto_clear_from_form(form),
    )


def _auto_clear_from_form(form: Mapping[str, str]) -> AutoClear:
    shares: dict[str, float] = {}
    for name, label in (("max_risk", "auto-clear: highest risk"), ("qc_sample_rate", "auto-clear: QC sample rate")):
        share = _seconds(form, f"auto_clear.{name}", label, high=1.0)
        if share is None:
            raise PolicyInvalid(label, "is required: a number from 0 to 1", "")
        shares[name] = share
    return AutoClear(enabled=form.get("auto_clear.enabled") == "on", **shares)


def form_values(policy: ExamPolicy) -> dict[str, str]:
    """The policy form's fields, filled in from `policy` (what `policy_from_form` reads back)."""
    values = {"sensitivity": f"{policy.sensitivity:g}", "allowed_aids": policy.allowed_aids}
    for kind, settings in policy.kinds.items():
        values[f"{kind.value}.enabled"] = "on" if settings.enabled else ""
        values[f"{kind.value}.min_duration_s"] = f"{settings.min_duration_ms / 1000:g}"
    for name in TOLERANCE_FIELDS:
        value = getattr(policy.looking_away, name)
        values[f"looking_away.{name}"] = "" if value is None else f"{value:g}"
    values["auto_clear.enabled"] = "on" if policy.auto_clear.enabled else ""
    values["auto_clear.max_risk"] = f"{policy.auto_clear.max_risk:g}"
    values["auto_clear.qc_sample_rate"] = f"{policy.auto_clear.qc_sample_rate:g}"
    return values


@dataclass(frozen=True)
class Preview:
    kinds: list[KindChange]
    previewed: int  # sessions re-scored for the preview
    eligible: int  # sessions applying would re-score
    changed: int  # of those previewed, sessions whose flags would change
    unreadable: int  # previewed sessions whose stored signals could not be read
    left: list[SessionLeft]  # sessions applying would leave as they are


def detector_flags(db: Session, session_id: str) -> list[FlagSpan]:
    rows = db.execute(
        select(FlagSegment.kind, FlagSegment.start_ms, FlagSegment.end_ms).where(
            FlagSegment.session_id == session_id, FlagSegment.source == FlagSource.DETECTOR.value
        )
    )
    return [FlagSpan(kind, start, end) for kind, start, end in rows]


def preview(
    db: Session, exam_id: str, proposed: ExamPolicy, rescorer: Rescorer, max_sessions: int = PREVIEW_SESSIONS
) -> Preview:
    """What applying `proposed` would change on the exam's sessions (see the module's docstring)."""
    eligible: list[ExamSession] = []
    left: list[SessionLeft] = []
    for session, status in scored_sessions(db, exam_id):
        why = why_not_rescored(session.state, status)
        if why is None:
            eligible.append(session)
        else:
            left.append(SessionLeft(session.id, session.candidate_id, session.attempt_id, why))
    diffs, unreadable = [], 0
    for session in eligible[:max_sessions]:
        run = stored_run(db, session)
        if run is None:
            unreadable += 1
            continue
        try:
            after = rescorer(run, accommodated(proposed, db.get(Accommodation, session.id)))
        except ObjectNotFound:
            unreadable += 1
            continue
        diffs.append(diff_flags(detector_flags(db, session.id), after))
    previewed = min(len(eligible), max_sessions)
    changed = sum(1 for diff in diffs if diff.changed)
    return Preview(changes_per_kind(diffs), previewed, len(eligible), changed, unreadable, left)


@dataclass(frozen=True)
class RescoredLine:
    """A session whose flags a re-scoring under this policy changed."""

    session_id: str
    candidate_id: str
    attempt_id: str
    version: int
    added: int
    removed: int
    dropped_decisions: int
    at: datetime


@dataclass(frozen=True)
class ApplyStatus:
    """Where applying the exam's current policy stands."""

    version: int
    waiting: int  # re-scoring jobs queued or running
    failed: list[str]  # the last error of each re-scoring job that failed since this version
    rescored: list[RescoredLine]
    left: list[SessionLeft]


def apply_status(db: Session, exam_id: str, since: datetime | None) -> ApplyStatus:
    """Jobs still to run, failures, and the sessions re-scored under the current version (`since`: when it was set)."""
    version = current_version(db, exam_id)
    exam_sessions = select(ExamSession.id).where(ExamSession.exam_id == exam_id)
    rescores = and_(Job.session_id.in_(exam_sessions), Job.kind == JobKind.RESCORE.value)
    waiting = db.scalar(select(func.count()).select_from(Job).where(rescores, Job.state.in_(OPEN_JOB_STATES))) or 0
    failed_jobs = select(Job.last_error).where(rescores, Job.state == JobState.FAILED.value)
    if since is not None:
        failed_jobs = failed_jobs.where(Job.updated_at >= since)
    failed = [error or "failed" for error in db.scalars(failed_jobs)]
    rows = db.execute(
        select(FlagVersion, ExamSession.candidate_id, ExamSession.attempt_id)
        .join(ExamSession, ExamSession.id == FlagVersion.session_id)
        .where(ExamSession.exam_id == exam_id, FlagVersion.policy_version == version)
        .order_by(FlagVersion.created_at.desc())
    ).all()
    rescored = [
        RescoredLine(
            v.session_id, candidate, attempt, v.version, v.added, v.removed, len(v.dropped_decisions), v.created_at
        )
        for v, candidate, attempt in rows
    ]
    left = [
        SessionLeft(session.id, session.candidate_id, session.attempt_id, why)
        for session, status in scored_sessions(db, exam_id)
        if (why := why_not_rescored(session.state, status)) is not None
    ]
    return ApplyStatus(version, waiting, failed, rescored, left)


def set_accommodation(
    db: Session, session: ExamSession, kinds_off: list[str], note: str, actor: Actor, now: datetime
) -> bool:
    """Set (or clear, with no kind and no note) the attempt's accommodation and queue its re-scoring when it may be
    re-scored; returns whether it was queued. The note may be medical: the audit trail records that it changed,
    never its text (the trail cannot be erased)."""
    known = {k.value for k in FlagKind}
    unknown = sorted(set(kinds_off) - known)
    if unknown:
        raise PolicyInvalid("kinds turned off", f"must be flag kinds ({', '.join(sorted(known))})", unknown)
    chosen, note = sorted(set(kinds_off)), note.strip()
    if len(note) > MAX_NOTE:
        raise PolicyInvalid("note", f"must be at most {MAX_NOTE} characters", show_got=False)
    row = db.get(Accommodation, session.id)
    before_kinds, before_note = ([], "") if row is None else (list(row.kinds_off), row.note)
    if not chosen and not note:
        if row is not None:
            db.delete(row)
    else:
        if row is None:
            row = Accommodation(session_id=session.id)
            db.add(row)
        row.kinds_off, row.note, row.set_by, row.set_at = chosen, note, actor.user.id, now
    queued = 0
    if why_not_rescored(session.state, review_status(db, session.id)) is None:
        queued = queue_rescores(db, [session.id])
    audit.record(
        db, actor.name, "accommodation_set", at=now, tenant_id=session.tenant_id, session_id=session.id, ip=actor.ip,
        kinds_off_before=before_kinds, kinds_off=chosen, note_changed=before_note != note, has_note=bool(note),
        rescore_queued=queued,
    )  # fmt: skip
    return queued > 0


@dataclass(frozen=True)
class SessionPolicy:
    """What the session page tells the reviewer about the rules this attempt was scored under."""

    allowed_aids: str
    kinds_off: list[str]
    accommodation_note: str
    accommodation_by: str | None
    versions: list[FlagVersion]  # re-scorings that changed the flags, newest first

    @property
    def accommodated(self) -> bool:
        return bool(self.kinds_off or self.accommodation_note)


def session_policy(db: Session, session: ExamSession) -> SessionPolicy:
    try:
        aids = ExamPolicy.from_json(session.exam.policy).allowed_aids
    except PolicyInvalid:
        aids = ""
    row = db.get(Accommodation, session.id)
    by = None if row is None or row.set_by is None else db.scalar(select(User.username).where(User.id == row.set_by))
    versions = db.scalars(
        select(FlagVersion).where(FlagVersion.session_id == session.id).order_by(FlagVersion.version.desc())
    ).all()
    return SessionPolicy(
        allowed_aids=aids,
        kinds_off=[] if row is None else list(row.kinds_off),
        accommodation_note="" if row is None else row.note,
        accommodation_by=by,
        versions=list(versions),
    )
