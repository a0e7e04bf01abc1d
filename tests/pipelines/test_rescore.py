"""A policy change applied: `proctor worker` runs each `RESCORE` job from the stored signals, never decoding, and
never over a final review."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.context import AppContext
from core.db import utcnow
from core.exam_policy import AutoClear, ExamPolicy
from core.policy_changes import apply_policy
from core.rescoring import NotRescored, queue_rescores
from core.tables import Accommodation, AuditEvent, Exam, ExamSession, FlagDecision, FlagSegment, FlagVersion, Job
from core.tenants import add_tenant
from core.vocabulary import Decision, JobKind, JobState, Outcome, Role
from pipelines.analysis import PIPELINE_VERSION
from pipelines.jobs import JobQueue
from pipelines.rescore import rescore_session
from pipelines.worker import Worker
from review_ui.accounts import add_user
from review_ui.decisions import Actor, claim, decide_flag, set_outcome
from tests.support.stored_signals import NoDecoding, episode_signals, store_processed_session

# A 2.4 s episode with no face (under no_face's 3 s minimum), a 5 s one, and 3 s of a second face.
SCRIPT = {"no_face": [(10.0, 12.4), (20.0, 25.0)], "two_faces": [(40.0, 43.0)]}
# The change: no face from 2 s; multiple faces no longer flagged.
CHANGED = ExamPolicy.from_json(
    {"kinds": {"no_face": {"min_duration_ms": 2000}, "multiple_faces": {"enabled": False}}, "allowed_aids": "notes"}
)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evidence frames and thumbnails are cut with the decoder too: any call to it fails the test."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a re-scoring called the decoder")

    monkeypatch.setattr("pipelines.process.decode_chunk", refuse)
    monkeypatch.setattr("pipelines.decode.decode_chunk", refuse)


def flags(context: AppContext, session_id: str) -> dict[tuple[str, int, int], str]:
    """The session's flags, (kind, start_ms, end_ms) -> row id."""
    with context.db() as db:
        rows = db.scalars(select(FlagSegment).where(FlagSegment.session_id == session_id))
        return {(r.kind, r.start_ms, r.end_ms): r.id for r in rows}


def reviewer(context: AppContext) -> Actor:
    with context.db() as db:
        user = add_user(db, f"rev-{uuid.uuid4().hex[:8]}", "a long enough password", Role.REVIEWER)
        db.commit()
        db.refresh(user)
        db.expunge(user)
        return Actor(user, None)


def world(context: AppContext) -> tuple[str, str, str, str]:
    """A tenant's exam with a session in review and one whose review is final; (exam id, in review, final, the
    in-review session's reviewer's confirmed multiple-faces flag id)."""
    with context.db() as db:
        tenant = add_tenant(db, f"t-{uuid.uuid4().hex[:8]}", "platform")
        db.commit()
        tenant_id = tenant.id
    signals = episode_signals(60, no_face=SCRIPT["no_face"], two_faces=SCRIPT["two_faces"])
    open_id = store_processed_session(context, tenant_id, "exam-r", signals)
    final_id = store_processed_session(context, tenant_id, "exam-r", signals)
    who, now = reviewer(context), utcnow()
    with context.db() as db:
        confirmed = ""
        for sid in (open_id, final_id):
            session = db.get(ExamSession, sid)
            assert session is not None
            claim(db, session, who, now, timedelta(minutes=30))
            for (kind, _, _), flag_id in flags(context, sid).items():
                decision = Decision.CONFIRMED if kind == "multiple_faces" else Decision.DISMISSED
                decide_flag(db, session, flag_id, decision, "seen", who, now)
                confirmed = flag_id if kind == "multiple_faces" and sid == open_id else confirmed
        final = db.get(ExamSession, final_id)
        assert final is not None
        set_outcome(db, final, Outcome.CLEAN, "", who, now)
        db.commit()
        exam_id = db.get(ExamSession, open_id).exam_id  # type: ignore[union-attr]
    return exam_id, open_id, final_id, confirmed


def test_a_rescore_job_resegments_the_stored_signals_without_decoding(context: AppContext, no_decoding: None) -> None:
    exam_id, open_id, final_id, confirmed = world(context)
    before_open, before_final = flags(context, open_id), flags(context, final_id)
    assert set(before_open) == {("no_face", 20000, 25000), ("multiple_faces", 40000, 43000)}
    with context.db() as db:
        exam = db.get(Exam, exam_id)
        assert exam is not None
        applied = apply_policy(db, exam, CHANGED, "user:officer", utcnow())
        db.commit()
    assert (applied.version, applied.changed, applied.queued) == (1, True, 1)
    assert [(s.session_id, s.why) for s in applied.not_rescored] == [(final_id, NotRescored.FINAL)]

    worker = Worker(context.db, context.store, NoDecoding(), JobQueue(context.db))
    assert worker.run_one(open_id) is True  # each test claims its own sessions' jobs: the database is shared
    assert worker.run_one(open_id) is False and worker.run_one(final_id) is False, "the final one was never queued"

    after = flags(context, open_id)
    assert set(after) == {("no_face", 10000, 12400), ("no_face", 20000, 25000)}
    assert after[("no_face", 20000, 25000)] == before_open[("no_face", 20000, 25000)], "the same flag keeps its row"
    assert flags(context, final_id) == before_final, "a final review keeps its flags"
    with context.db() as db:
        decisions = {d.segment_id: d.decision for d in db.scalars(select(FlagDecision))}
        assert decisions[after[("no_face", 20000, 25000)]] == "dismissed", "its decision too"
        assert after[("no_face", 10000, 12400)] not in decisions, "a new flag comes in undecided"
        assert confirmed not in decisions
        (version,) = db.scalars(select(FlagVersion).where(FlagVersion.session_id == open_id)).all()
        assert (version.version, version.policy_version, version.added, version.removed, version.kept) == (
            2,
            1,
            1,
            1,
            1,
        )
        assert [(d["kind"], d["decision"], d["note"]) for d in version.dropped_decisions] == [
            ("multiple_faces", "confirmed", "seen")
        ]
        session = db.get(ExamSession, open_id)
        assert session is not None and session.state == "in_review", "a re-scoring never moves the state"
        job = db.scalar(select(Job).where(Job.session_id == open_id, Job.kind == JobKind.RESCORE.value))
        assert job is not None and job.state == JobState.DONE.value
        entry = db.scalar(
            select(AuditEvent).where(AuditEvent.session_id == open_id, AuditEvent.action == "flags_rescored")
        )
        assert entry is not None and entry.actor == "system:rescore"
        assert entry.detail["removed"] == [{"kind": "multiple_faces", "start_ms": 40000, "end_ms": 43000}]
        assert entry.detail["dropped_decisions"][0]["decision"] == "confirmed"
        assert "note" not in entry.detail["dropped_decisions"][0]


def test_a_rescore_says_which_pipeline_scored_the_flags(context: AppContext, no_decoding: None) -> None:
    """A session processed by an older pipeline and re-scored has this pipeline's flags: the session, every flag
    (kept or added) and the audit entry say so, so the trail shows which rules raised what a reviewer decides on."""
    exam_id, open_id, _, _ = world(context)
    with context.db() as db:
        session = db.get(ExamSession, open_id)
        assert session is not None
        session.pipeline_version = "older"
        for row in db.scalars(select(FlagSegment).where(FlagSegment.session_id == open_id)):
            row.pipeline_version = "older"
        exam = db.get(Exam, exam_id)
        assert exam is not None
        assert apply_policy(db, exam, CHANGED, "user:officer", utcnow()).queued == 1
        db.commit()
    assert Worker(context.db, context.store, NoDecoding(), JobQueue(context.db)).run_one(open_id) is True
    with context.db() as db:
        session = db.get(ExamSession, open_id)
        assert session is not None and session.pipeline_version == PIPELINE_VERSION
        rows = db.scalars(select(FlagSegment).where(FlagSegment.session_id == open_id)).all()
        assert {(r.kind, r.start_ms, r.pipeline_version) for r in rows} == {
            ("no_face", 10000, PIPELINE_VERSION),  # added
            ("no_face", 20000, PIPELINE_VERSION),  # kept, with this scoring's numbers
        }
        entry = db.scalar(
            select(AuditEvent).where(AuditEvent.session_id == open_id, AuditEvent.action == "flags_rescored")
        )
        assert entry is not None and entry.detail["pipeline_version"] == PIPELINE_VERSION


def test_a_session_finalised_after_the_apply_keeps_its_flags(context: AppContext, no_decoding: None) -> None:
    """The job re-checks in its publishing transaction: the reviewer who made the outcome final meanwhile wins."""
    exam_id, open_id, _, _ = world(context)
    with context.db() as db:
        exam = db.get(Exam, exam_id)
        assert exam is not None
        assert apply_policy(db, exam, CHANGED, "user:officer", utcnow()).queued == 1
        db.commit()
    who, before = reviewer(context), flags(context, open_id)
    with context.db() as db:
        session = db.get(ExamSession, open_id)
        assert session is not None
        session.claimed_by = None
        claim(db, session, who, utcnow(), timedelta(minutes=30))
        set_outcome(db, session, Outcome.SUSPICIOUS, "two people", who, utcnow())
        db.commit()
    assert Worker(context.db, context.store, NoDecoding(), JobQueue(context.db)).run_one(open_id) is True
    assert flags(context, open_id) == before
    with context.db() as db:
        assert db.scalars(select(FlagVersion).where(FlagVersion.session_id == open_id)).all() == []
        session = db.get(ExamSession, open_id)
        assert session is not None and session.state == "reviewed"


def test_an_accommodation_turns_a_kind_off_for_one_attempt_at_rescoring(context: AppContext, no_decoding: None) -> None:
    _, open_id, _, _ = world(context)
    with context.db() as db:
        db.add(Accommodation(session_id=open_id, kinds_off=["multiple_faces"], note="a carer sits in"))
        assert queue_rescores(db, [open_id, open_id]) == 1
        assert queue_rescores(db, [open_id]) == 0, "one open re-scoring per session"
        db.commit()
    assert Worker(context.db, context.store, NoDecoding(), JobQueue(context.db)).run_one(open_id) is True
    assert set(flags(context, open_id)) == {("no_face", 20000, 25000)}
    with context.db() as db:
        versions = db.scalars(select(FlagVersion.version).where(FlagVersion.session_id == open_id)).all()
    assert versions == [2]
    again = rescore_session(context.db, context.store, open_id)
    assert again.diff is not None and not again.diff.changed and again.version is None, "nothing new: no version"


def test_a_session_whose_signals_are_gone_fails_its_job_saying_what_to_do(
    context: AppContext, no_decoding: None
) -> None:
    _, open_id, _, _ = world(context)
    before = flags(context, open_id)
    with context.db() as db:
        session = db.get(ExamSession, open_id)
        assert session is not None and session.results_prefix is not None
        context.store.delete_prefix(session.results_prefix)
        queue_rescores(db, [open_id])
        db.commit()
    assert Worker(context.db, context.store, NoDecoding(), JobQueue(context.db)).run_one(open_id) is True
    with context.db() as db:
        job = db.scalar(select(Job).where(Job.session_id == open_id, Job.kind == JobKind.RESCORE.value))
        session = db.get(ExamSession, open_id)
    assert job is not None and job.state == JobState.FAILED.value, "not retried: the signals will not come back"
    assert job.last_error is not None and "stored signals" in job.last_error and "process it again" in job.last_error
    assert session is not None and session.state == "in_review" and flags(context, open_id) == before


def test_a_change_that_raises_no_other_flags_is_a_version_that_rescores_nothing(
    context: AppContext, no_decoding: None
) -> None:
    """Turning auto-clear on, or writing the allowed aids, is a new version (audited) but queues no re-scoring."""
    exam_id, _, _, _ = world(context)
    with context.db() as db:
        exam = db.get(Exam, exam_id)
        assert exam is not None
        aids_and_auto_clear = replace(
            CHANGED, allowed_aids="one page of notes", auto_clear=AutoClear(enabled=True, max_risk=0.1)
        )
        assert apply_policy(db, exam, CHANGED, "user:officer", utcnow()).queued == 1
        applied = apply_policy(db, exam, aids_and_auto_clear, "user:officer", utcnow())
        db.commit()
    assert (applied.version, applied.changed, applied.queued, applied.not_rescored) == (2, True, 0, [])
