"""Retention: sessions past the period lose every stored object, keep their row and decision, and say why."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from core.context import AppContext
from core.db import utcnow
from core.erasure import (
    ERASED_BY_RETENTION,
    ERASED_NOTE,
    ERASED_WEBHOOK_BODY,
    erase_expired,
    expired_sessions,
)
from core.tables import (
    Accommodation,
    AuditEvent,
    Exam,
    ExamSession,
    FlagDecision,
    FlagSegment,
    FlagVersion,
    ReviewOutcome,
    SessionReview,
    StateChange,
    WebhookDelivery,
)
from core.tenants import add_tenant
from ingest.client import upload_session
from ingest.uploads import Uploads
from pipelines.analysis import AnalysisConfig
from pipelines.fanout import LocalFanout
from pipelines.jobs import JobQueue
from pipelines.worker import JobEnded, JobOutcome, Worker, WorkerConfig
from proctor.samples import SampleSession, build_sample_session
from storage.keys import SessionPrefix
from storage.object_store import ObjectInfo, ObjectNotFound, ObjectStore, S3Location, StorageUnavailable
from tests.support.platform import Api

DAYS = 30


@dataclass(frozen=True)
class Stored:
    session_id: str
    tenant_id: str
    prefix: str


def stored_session(
    context: AppContext, *, created_days_ago: float, final_days_ago: float | None = None, awaiting: bool = False
) -> Stored:
    """A processed session with a recording and an evidence frame in S3, and optionally a review."""
    now = utcnow()
    with context.db() as db:
        tenant = add_tenant(db, f"ret-{uuid.uuid4().hex[:8]}", "retention test")
        exam = Exam(tenant_id=tenant.id, external_id="exam-1")
        db.add(exam)
        db.flush()
        created = now - timedelta(days=created_days_ago)
        session = ExamSession(
            tenant_id=tenant.id,
            exam_id=exam.id,
            candidate_id="cand-1",
            attempt_id=uuid.uuid4().hex[:8],
            started_at=created,
            state="reviewed" if final_days_ago is not None else "in_review" if awaiting else "processed",
            created_at=created,
        )
        db.add(session)
        db.flush()
        if final_days_ago is not None or awaiting:
            decided = now - timedelta(days=final_days_ago if final_days_ago is not None else created_days_ago)
            db.add(
                SessionReview(
                    session_id=session.id,
                    outcome="Rules Violation",
                    note="second person",
                    status="awaiting_second" if awaiting else "final",
                    reviewer_id=None,
                    decided_at=decided,
                    finalised_at=None if awaiting else decided,
                )
            )
        db.commit()
        prefix = SessionPrefix(tenant.slug, exam.external_id, session.id)
        stored = Stored(session.id, tenant.id, prefix.prefix)
    context.store.put_bytes(prefix.key("media", "webcam"), b"\x1a\x45\xdf\xa3 a recording")
    context.store.put_bytes(prefix.key("results", "r1", "evidence", "no_face-1000.jpg"), b"\xff\xd8 a face")
    return stored


def objects(context: AppContext, stored: Stored) -> list[str]:
    return [o.key for o in context.store.list_objects(stored.prefix)]


def test_only_sessions_past_the_period_are_erased_and_they_keep_their_row_decision_and_reason(
    context: AppContext,
) -> None:
    reviewed_long_ago = stored_session(context, created_days_ago=60, final_days_ago=DAYS + 1)
    reviewed_lately = stored_session(context, created_days_ago=60, final_days_ago=DAYS - 1)  # its clock restarted
    never_reviewed = stored_session(context, created_days_ago=DAYS + 1)
    recent = stored_session(context, created_days_ago=DAYS - 1)
    awaiting_second = stored_session(context, created_days_ago=DAYS + 1, awaiting=True)  # a maximum, not a minimum
    mine = {s.session_id for s in (reviewed_long_ago, reviewed_lately, never_reviewed, recent, awaiting_second)}
    now = utcnow()

    with context.db() as db:
        due = [e for e in expired_sessions(db, DAYS, now) if e.session_id in mine]
    assert {e.session_id for e in due} == {s.session_id for s in (reviewed_long_ago, never_reviewed, awaiting_second)}
    clock = {e.session_id: e.since for e in due}
    assert abs(clock[reviewed_long_ago.session_id] - (now - timedelta(days=DAYS + 1))) < timedelta(minutes=1)

    listed = erase_expired(context.db, context.store, DAYS, now, dry_run=True)
    assert {e.session_id for e in listed.sessions} >= {e.session_id for e in due}
    assert all(objects(context, s) for s in (reviewed_long_ago, never_reviewed, awaiting_second))  # nothing erased

    erased = erase_expired(context.db, context.store, DAYS, now)
    assert {e.session_id for e in erased.sessions} >= {e.session_id for e in due}
    for gone in (reviewed_long_ago, never_reviewed, awaiting_second):
        assert objects(context, gone) == []
    for kept in (reviewed_lately, recent):
        assert len(objects(context, kept)) == 2
    with context.db() as db:
        session = db.get(ExamSession, reviewed_long_ago.session_id)
        assert session is not None and session.state == "deleted" and session.deleted_at is not None
        assert session.reason_code == "retention_expired" and f"{DAYS}-day retention" in (session.reason or "")
        review = db.get(SessionReview, reviewed_long_ago.session_id)
        assert review is not None and review.outcome == "Rules Violation"  # the decision outlives the recording
        change = db.scalars(select(StateChange).where(StateChange.session_id == reviewed_long_ago.session_id)).one()
        assert (change.from_state, change.to_state) == ("reviewed", "deleted")
        audit = db.scalars(
            select(AuditEvent).where(
                AuditEvent.session_id == reviewed_long_ago.session_id, AuditEvent.action == "erase"
            )
        ).one()
        assert audit.actor == ERASED_BY_RETENTION and audit.tenant_id == reviewed_long_ago.tenant_id
        assert audit.detail["code"] == "retention_expired" and audit.detail["objects_removed"] == 2
    # A second run finds nothing more of these: erased sessions are not erased again.
    again = erase_expired(context.db, context.store, DAYS, utcnow())
    assert not {e.session_id for e in again.sessions} & mine


def test_a_session_under_appeal_is_kept_past_the_period(context: AppContext) -> None:
    """Its recording is the appeal's evidence: the clock stops while the review is reopened."""
    appealed = stored_session(context, created_days_ago=90, final_days_ago=DAYS + 30)
    now = utcnow()
    with context.db() as db:
        db.add(
            ReviewOutcome(
                session_id=appealed.session_id,
                version=1,
                outcome="Rules Violation",
                decided_by=None,
                decided_at=now - timedelta(days=DAYS + 30),
                reopened_at=now - timedelta(days=1),
                reopen_reason="the candidate appealed",
            )
        )
        review = db.get(SessionReview, appealed.session_id)
        db.delete(review)  # as `review_ui.decisions.reopen` leaves it: open again, under appeal
        session = db.get(ExamSession, appealed.session_id)
        assert session is not None
        session.state = "in_review"
        db.commit()
        assert appealed.session_id not in {e.session_id for e in expired_sessions(db, DAYS, now)}
    erase_expired(context.db, context.store, DAYS, now)
    assert len(objects(context, appealed)) == 2


def test_a_platforms_erasure_request_is_audited_too(context: AppContext, uploads: Uploads) -> None:
    stored = stored_session(context, created_days_ago=1)
    uploads.delete(stored.tenant_id, stored.session_id)
    assert objects(context, stored) == []
    with context.db() as db:
        audit = db.scalars(select(AuditEvent).where(AuditEvent.session_id == stored.session_id)).one()
        session = db.get(ExamSession, stored.session_id)
        assert session is not None
        assert audit.action == "erase" and audit.actor == f"api:{session.tenant.slug}"
    assert audit.detail == {"code": "erased", "reason": "recordings erased on request", "objects_removed": 2}


def test_the_period_must_be_at_least_a_day(context: AppContext) -> None:
    with context.db() as db, pytest.raises(ValueError, match=">= 1"):
        expired_sessions(db, 0, datetime.now())


def test_proctor_retention_dry_run_then_erase(
    context: AppContext, s3: S3Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proctor.cli import app

    stored = stored_session(context, created_days_ago=DAYS + 5)
    cli_environment(context, s3, monkeypatch)

    unset = CliRunner().invoke(app, ["retention"])
    assert unset.exit_code == 2 and "PROCTOR_RETENTION_DAYS" in unset.output
    dry = CliRunner().invoke(app, ["retention", "--days", str(DAYS), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert stored.session_id in dry.output and "would erase" in dry.output
    assert len(objects(context, stored)) == 2
    monkeypatch.setenv("PROCTOR_RETENTION_DAYS", str(DAYS))
    ran = CliRunner().invoke(app, ["retention"])
    assert ran.exit_code == 0, ran.output
    assert stored.session_id in ran.output and "erased" in ran.output
    assert objects(context, stored) == []


def test_retention_goes_on_past_a_session_it_cannot_erase_and_says_so(
    context: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 refuses one session's deletion: the others past the period are still erased, the failure is named
    (`RetentionRun.failed`, and by `proctor retention` on stderr with exit code 1), and the next run erases it."""
    stuck = stored_session(context, created_days_ago=DAYS + 9)  # the oldest: erased first
    later = stored_session(context, created_days_ago=DAYS + 8)
    delete_prefix = ObjectStore.delete_prefix

    def refusing(store: ObjectStore, prefix: str) -> int:
        if prefix == stuck.prefix:
            raise StorageUnavailable("delete_objects", prefix, 5, ConnectionResetError("connection reset by peer"))
        return delete_prefix(store, prefix)

    monkeypatch.setattr(ObjectStore, "delete_prefix", refusing)
    run = erase_expired(context.db, context.store, DAYS, utcnow())
    assert [(f.kind, f.id) for f in run.failed if f.id in (stuck.session_id, later.session_id)] == [
        ("session", stuck.session_id)
    ]
    assert "connection reset by peer" in run.failed[0].error
    erased = {e.session_id for e in run.sessions}
    assert later.session_id in erased and stuck.session_id not in erased
    assert objects(context, later) == [] and len(objects(context, stuck)) == 2
    with context.db() as db:
        row = db.get(ExamSession, stuck.session_id)
        assert row is not None and row.state != "deleted"

    monkeypatch.setattr(ObjectStore, "delete_prefix", delete_prefix)
    again = erase_expired(context.db, context.store, DAYS, utcnow())
    assert stuck.session_id in {e.session_id for e in again.sessions} and objects(context, stuck) == []


def test_proctor_retention_exits_1_naming_what_it_could_not_erase(
    context: AppContext, s3: S3Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proctor.cli import app

    stuck = stored_session(context, created_days_ago=DAYS + 7)
    later = stored_session(context, created_days_ago=DAYS + 6)
    cli_environment(context, s3, monkeypatch)
    delete_prefix = ObjectStore.delete_prefix

    def refusing(store: ObjectStore, prefix: str) -> int:
        if prefix == stuck.prefix:
            raise StorageUnavailable("delete_objects", prefix, 5, ConnectionResetError("connection reset by peer"))
        return delete_prefix(store, prefix)

    monkeypatch.setattr(ObjectStore, "delete_prefix", refusing)
    ran = CliRunner().invoke(app, ["retention", "--days", str(DAYS)])
    assert ran.exit_code == 1, ran.output
    assert f"could not erase session {stuck.session_id} tenant {stuck.tenant_id}" in ran.stderr
    assert "connection reset by peer" in ran.stderr
    assert f"erased session {later.session_id}" in ran.stdout and "could not be erased" in ran.stdout
    assert objects(context, later) == []


def cli_environment(context: AppContext, s3: S3Location, monkeypatch: pytest.MonkeyPatch) -> None:
    """`proctor` commands run in this process against the test's database and S3 server."""
    monkeypatch.setenv("PROCTOR_DATABASE_URL", context.settings.resolved_database_url)
    monkeypatch.setenv("PROCTOR_DATA_DIR", str(context.settings.data_dir))
    monkeypatch.setenv("PROCTOR_S3_ENDPOINT", s3.endpoint)
    monkeypatch.setenv("PROCTOR_S3_ACCESS_KEY", s3.access_key)
    monkeypatch.setenv("PROCTOR_S3_SECRET_KEY", s3.secret_key)
    monkeypatch.setenv("PROCTOR_S3_BUCKET", s3.bucket)
    monkeypatch.delenv("PROCTOR_RETENTION_DAYS", raising=False)


NAMED = "Jane Roe"  # what a reviewer might write about the candidate


def test_an_erasure_scrubs_the_notes_and_webhook_bodies_that_name_the_candidate(
    context: AppContext, uploads: Uploads
) -> None:
    """Free text goes with the recordings; the decisions stay. An undelivered webhook is not sent any more."""
    stored = stored_session(context, created_days_ago=3, final_days_ago=2)
    now = utcnow()
    with context.db() as db:
        review = db.get(SessionReview, stored.session_id)
        assert review is not None
        review.note, review.second_note = f"{NAMED} passed a phone", f"agreed: {NAMED}"
        flag = FlagSegment(
            session_id=stored.session_id, kind="phone", start_ms=0, end_ms=2000, score=1.0, peak_ms=1000,
            pipeline_version="", source="reviewer",
        )  # fmt: skip
        db.add(flag)
        db.flush()
        db.add(FlagDecision(segment_id=flag.id, session_id=stored.session_id, decision="confirmed", note=NAMED))
        kept = {
            "session_id": stored.session_id,
            "candidate_id": "cand-1",
            "flags": [{"id": flag.id, "decision": "confirmed", "note": f"{NAMED} again"}],
            "comments": [{"by": None, "role": "reviewer", "text": f"{NAMED} passed a phone"}],
        }
        db.add(
            ReviewOutcome(
                session_id=stored.session_id, version=1, outcome="Rules Violation", decided_by=None,
                decided_at=now, reopened_at=now, reopen_reason=f"{NAMED} appealed", platform_result=kept,
            )
        )  # fmt: skip
        db.add(Accommodation(session_id=stored.session_id, kinds_off=["looking_away"], note=f"{NAMED}: a neck brace"))
        dropped = {"kind": "no_face", "start_ms": 0, "end_ms": 900, "decision": "dismissed", "note": f"{NAMED} bent"}
        db.add(
            FlagVersion(
                session_id=stored.session_id, version=2, added=0, removed=1, kept=0, dropped_decisions=[dropped]
            )
        )
        body = json.dumps({"event": "review.final", "review": kept})
        for state in ("delivered", "pending"):
            db.add(
                WebhookDelivery(
                    tenant_id=stored.tenant_id, session_id=stored.session_id, event="review.final",
                    url="https://lms.example/hook", body=body, state=state,
                )
            )  # fmt: skip
        db.commit()

    uploads.delete(stored.tenant_id, stored.session_id)
    with context.db() as db:
        review = db.get(SessionReview, stored.session_id)
        decision = db.scalars(select(FlagDecision).where(FlagDecision.session_id == stored.session_id)).one()
        version = db.get(ReviewOutcome, (stored.session_id, 1))
        deliveries = db.scalars(select(WebhookDelivery).where(WebhookDelivery.session_id == stored.session_id)).all()
        assert review is not None and version is not None
        left = [
            review.note,
            review.second_note,
            decision.note,
            version.reopen_reason,
            json.dumps(version.platform_result),
        ]
        left += [d.body for d in deliveries]
        accommodation = db.get(Accommodation, stored.session_id)
        (flag_version,) = db.scalars(select(FlagVersion).where(FlagVersion.session_id == stored.session_id))
        assert accommodation is not None and accommodation.kinds_off == ["looking_away"]
        left += [accommodation.note, json.dumps(flag_version.dropped_decisions)]
        assert flag_version.dropped_decisions[0]["decision"] == "dismissed"
        assert not [text for text in left if NAMED in (text or "")]
        assert review.note == review.second_note == decision.note == version.reopen_reason == ERASED_NOTE
        assert (review.outcome, decision.decision, version.outcome) == (
            "Rules Violation",
            "confirmed",
            "Rules Violation",
        )
        assert version.platform_result is not None and version.platform_result["flags"][0]["decision"] == "confirmed"
        assert {d.body for d in deliveries} == {ERASED_WEBHOOK_BODY}
        states = sorted((d.state, d.last_error or "") for d in deliveries)
        assert states[0] == ("delivered", "") and states[1][0] == "failed" and "erased" in states[1][1]


# -- a worker that the erasure races ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("erasure-race"), duration_s=24, seed=11)


def uploaded(api: Api, sample: SampleSession) -> tuple[str, str, str]:
    """The sample uploaded and queued by a new tenant: (tenant id, session id, the session's prefix)."""
    tenant_id, key = api.tenant()
    with api.client(key) as client:
        session_id = upload_session(client, webcam=sample.video_path, exam_id="exam-race", candidate_id="c")["id"]
    with api.context.db() as db:
        row = db.get(ExamSession, session_id)
        assert row is not None
        return tenant_id, session_id, SessionPrefix(row.tenant.slug, row.exam.external_id, row.id).prefix


def worker(api: Api) -> Worker:
    fanout = LocalFanout(AnalysisConfig(), api.context.location)
    return Worker(api.context.db, api.context.store, fanout, JobQueue(api.context.db), WorkerConfig(), "w-erasure")


def test_an_erasure_while_the_worker_writes_evidence_frames_leaves_no_object(
    api: Api, sample: SampleSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform's DELETE lands between two evidence frames: the erasure removes the recording, the worker's
    next read of it fails, and the worker deletes everything it wrote, including the frame written after the
    erasure. Reads go to S3 in small blocks here, so that the erased recording is read again, as a long one is."""
    tenant_id, session_id, prefix = uploaded(api, sample)
    store = api.context.store
    written: list[str] = []
    put_bytes, open_object = store.put_bytes, store.open

    def erased_at_the_first_frame(key: str, data: bytes, **options: Any) -> ObjectInfo:
        if "/evidence/" in key and not written:
            api.uploads.delete(tenant_id, session_id)  # the platform's erasure request, committed
        info = put_bytes(key, data, **options)
        written.append(key)
        return info

    monkeypatch.setattr(store, "put_bytes", erased_at_the_first_frame)
    monkeypatch.setattr(store, "open", lambda key: open_object(key, block_bytes=16 * 1024, cached_blocks=1))
    ended: list[JobEnded] = []
    racing = worker(api)
    racing.hooks = Heard(ended)
    assert racing.run_one(session_id)

    assert written and "/evidence/" in written[0], "a frame was written after the erasure"
    assert isinstance(ended[0].error, ObjectNotFound), "the worker failed reading the erased recording"
    assert store.list_versions(prefix) == [], "nothing the worker wrote outlives the erasure"
    with api.context.db() as db:
        row = db.get(ExamSession, session_id)
        assert row is not None and row.state == "deleted" and row.results_prefix is None


def test_a_run_that_fails_after_its_first_write_deletes_what_it_wrote(
    api: Api, sample: SampleSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any failure between the first write and the publication, not only a refused publication: here S3 gives
    up on the last object. The recording stays (the session is not erased) and the job is retried."""
    _, session_id, prefix = uploaded(api, sample)
    store = api.context.store
    put_bytes = store.put_bytes

    def failing_at_the_last_object(key: str, data: bytes, **options: Any) -> ObjectInfo:
        if key.endswith("/segments.json"):
            raise StorageUnavailable("put", key, 5, ConnectionResetError("connection reset by peer"))
        return put_bytes(key, data, **options)

    monkeypatch.setattr(store, "put_bytes", failing_at_the_last_object)
    ended: list[JobEnded] = []
    failing = worker(api)
    failing.hooks = Heard(ended)
    assert failing.run_one(session_id)
    assert isinstance(ended[0].error, StorageUnavailable) and ended[0].outcome == JobOutcome.RETRY
    left = [v.key[len(prefix) :] for v in store.list_versions(prefix)]
    assert left and not [key for key in left if key.startswith("results/")], left
    assert "media/webcam" in "\n".join(left)


def test_a_failed_progress_write_does_not_abort_the_job(api: Api, sample: SampleSession) -> None:
    """The progress bar's row is locked or the database blips between chunks: the job goes on and publishes."""
    _, session_id, _ = uploaded(api, sample)
    refused: list[int] = []

    def refuse_progress(db: Session) -> None:
        """Refuse the commits that change a session's `chunks_done` alone: the progress writes."""
        for row in db.dirty:
            changed = {a.key for a in inspect(row).attrs if a.history.has_changes()}
            if isinstance(row, ExamSession) and changed == {"chunks_done"}:
                refused.append(row.chunks_done)
                raise OperationalError("UPDATE sessions ...", {}, Exception("database is locked"))

    event.listen(api.context.db, "before_commit", refuse_progress)
    try:
        ended: list[JobEnded] = []
        steady = worker(api)
        steady.hooks = Heard(ended)
        assert steady.run_one(session_id)
    finally:
        event.remove(api.context.db, "before_commit", refuse_progress)
    assert refused, "every progress write was refused"
    assert ended[0].error is None and ended[0].outcome == JobOutcome.DONE
    with api.context.db() as db:
        row = db.get(ExamSession, session_id)
        assert row is not None and row.results_prefix is not None and row.chunks_done == row.chunks_total


@dataclass
class Heard:
    """Worker hooks that keep how each job ended."""

    ended: list[JobEnded]

    def tick(self) -> None:
        pass

    def job_ended(self, ended: JobEnded) -> None:
        self.ended.append(ended)
