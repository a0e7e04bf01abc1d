"""Retention: sessions past the period lose every stored object, keep their row and decision, and say why."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core.context import AppContext
from core.db import utcnow
from core.erasure import ERASED_BY_RETENTION, erase_expired, expired_sessions
from core.tables import AuditEvent, Exam, ExamSession, ReviewOutcome, SessionReview, StateChange
from core.tenants import add_tenant
from ingest.uploads import Uploads
from storage.keys import SessionPrefix
from storage.object_store import S3Location

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
    monkeypatch.setenv("PROCTOR_DATABASE_URL", context.settings.resolved_database_url)
    monkeypatch.setenv("PROCTOR_DATA_DIR", str(context.settings.data_dir))
    monkeypatch.setenv("PROCTOR_S3_ENDPOINT", s3.endpoint)
    monkeypatch.setenv("PROCTOR_S3_ACCESS_KEY", s3.access_key)
    monkeypatch.setenv("PROCTOR_S3_SECRET_KEY", s3.secret_key)
    monkeypatch.setenv("PROCTOR_S3_BUCKET", s3.bucket)
    monkeypatch.delenv("PROCTOR_RETENTION_DAYS", raising=False)

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
