"""Candidates' enrolments in the kernel: where they are stored, and retention, which erases an enrolment once it
is past the period and no live session within the period uses it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.context import AppContext
from core.db import utcnow
from core.enrolments import CandidatePrefix, latest_enrolment
from core.erasure import ERASED_BY_RETENTION, erase_expired, expired_enrolments
from core.tables import AuditEvent, CandidateEnrolment, Exam, ExamSession, SessionReview
from core.tenants import add_tenant
from storage.keys import InvalidIdentifier

DAYS = 30


class Candidates:
    """Builds one tenant's sessions and enrolments at chosen ages, with the enrolment files in S3."""

    def __init__(self, context: AppContext, slug: str | None = None) -> None:
        self.context = context
        with context.db() as db:
            tenant = add_tenant(db, slug or f"enr-{uuid.uuid4().hex[:8]}", "enrolment retention test")
            exam = Exam(tenant_id=tenant.id, external_id="exam-1")
            db.add(exam)
            db.commit()
            self.tenant_id, self.slug, self.exam_id = tenant.id, tenant.slug, exam.id

    def session(self, candidate: str, days_ago: float, *, final_days_ago: float | None = None) -> str:
        now = utcnow()
        with self.context.db() as db:
            created = now - timedelta(days=days_ago)
            session = ExamSession(
                tenant_id=self.tenant_id,
                exam_id=self.exam_id,
                candidate_id=candidate,
                attempt_id=uuid.uuid4().hex[:8],
                started_at=created,
                state="reviewed" if final_days_ago is not None else "processed",
                created_at=created,
            )
            db.add(session)
            db.flush()
            if final_days_ago is not None:
                decided = now - timedelta(days=final_days_ago)
                db.add(
                    SessionReview(
                        session_id=session.id,
                        outcome="Clean",
                        status="final",
                        reviewer_id=None,
                        decided_at=decided,
                        finalised_at=decided,
                    )
                )
            db.commit()
            return session.id

    def enrolment(self, candidate: str, session_id: str, days_ago: float) -> str:
        key = CandidatePrefix(self.slug, candidate).enrolment_key(session_id, "enrolment_photo")
        self.context.store.put_bytes(key, b"\xff\xd8 a face")
        with self.context.db() as db:
            row = CandidateEnrolment(
                tenant_id=self.tenant_id,
                candidate_id=candidate,
                session_id=session_id,
                kind="enrolment_photo",
                object_key=key,
                descriptor=[0.01] * 128,
                frames=1,
                face_size_px=120.0,
                brightness=110.0,
                sharpness=0.2,
                created_at=utcnow() - timedelta(days=days_ago),
            )
            db.add(row)
            db.commit()
            return row.id

    def stored(self, candidate: str) -> int:
        return len(list(self.context.store.list_objects(CandidatePrefix(self.slug, candidate).prefix)))


def test_retention_erases_enrolments_no_live_session_within_the_period_uses(context: AppContext) -> None:
    t = Candidates(context)
    # alone: its only session is past the period, so is its enrolment.
    alone = t.enrolment("alone", t.session("alone", DAYS + 10), DAYS + 10)
    # returning: enrolled long ago, sat an exam lately without a new enrolment: that exam uses the old one.
    returning = t.enrolment("returning", t.session("returning", DAYS + 10), DAYS + 10)
    t.session("returning", 5)
    # superseded: two old enrolments and a recent exam, which uses only the newer one.
    superseded = t.enrolment("superseded", t.session("superseded", DAYS + 20), DAYS + 20)
    newer = t.enrolment("superseded", t.session("superseded", DAYS + 10), DAYS + 10)
    t.session("superseded", 3)
    # reviewed: the enrolling session's review became final lately, so its clock (and its enrolment) runs on.
    reviewed = t.enrolment("reviewed", t.session("reviewed", DAYS + 10, final_days_ago=5), DAYS + 10)
    # recent: an enrolment inside the period stays whatever its sessions do.
    recent = t.enrolment("recent", t.session("recent", DAYS + 10), 5)
    # Another tenant's live session of a candidate with the same id protects nothing here.
    Candidates(context).session("alone", 1)
    mine = {alone, returning, superseded, newer, reviewed, recent}
    now = utcnow()

    with context.db() as db:
        due = {e.enrolment_id for e in expired_enrolments(db, DAYS, now)} & mine
    assert due == {alone, superseded}  # a live session past the period protects nothing: it goes too
    dry = erase_expired(context.db, context.store, DAYS, now, dry_run=True)
    assert {e.enrolment_id for e in dry.enrolments} & mine == due
    assert (t.stored("alone"), t.stored("superseded")) == (1, 2)  # nothing erased yet

    run = erase_expired(context.db, context.store, DAYS, now)
    assert {e.enrolment_id for e in run.enrolments} & mine == due
    assert (t.stored("alone"), t.stored("superseded"), t.stored("returning"), t.stored("recent")) == (0, 1, 1, 1)
    with context.db() as db:
        left = set(db.scalars(select(CandidateEnrolment.id).where(CandidateEnrolment.tenant_id == t.tenant_id)))
        assert left == {returning, newer, reviewed, recent}
        audit = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "erase_enrolment", AuditEvent.tenant_id == t.tenant_id)
        ).all()
        assert {a.actor for a in audit} == {ERASED_BY_RETENTION} and len(audit) == 2
        assert {a.detail["candidate_id"] for a in audit} == {"alone", "superseded"}
        assert all(a.detail["code"] == "retention_expired" and "descriptor" not in a.detail for a in audit)
    again = erase_expired(context.db, context.store, DAYS, utcnow())
    assert not {e.enrolment_id for e in again.enrolments} & mine


def test_latest_enrolment_is_the_newest_of_the_tenants_candidate_unless_the_session_has_its_own(
    context: AppContext,
) -> None:
    t, other = Candidates(context), Candidates(context)
    first_session = t.session("c", 9)
    first = t.enrolment("c", first_session, 9)
    second = t.enrolment("c", t.session("c", 4), 4)
    bare = t.session("c", 1)
    other.enrolment("c", other.session("c", 0), 0)  # newer, but another tenant's
    with context.db() as db:
        assert getattr(latest_enrolment(db, t.tenant_id, "c"), "id", None) == second
        assert getattr(latest_enrolment(db, t.tenant_id, "c", session_id=bare), "id", None) == second
        assert getattr(latest_enrolment(db, t.tenant_id, "c", session_id=first_session), "id", None) == first
        assert latest_enrolment(db, t.tenant_id, "someone-else") is None


def test_candidate_keys_are_validated() -> None:
    prefix = CandidatePrefix("acme", "c-8f2a")
    assert prefix.prefix == "acme/_candidates/c-8f2a/"
    assert (
        prefix.enrolment_key("0" * 32, "enrolment_clip")
        == f"acme/_candidates/c-8f2a/enrolment/{'0' * 32}-enrolment_clip"
    )
    with pytest.raises(InvalidIdentifier):
        CandidatePrefix("acme", "../other")
    with pytest.raises(InvalidIdentifier):
        prefix.enrolment_key("a/b", "enrolment_photo")
    with pytest.raises(ValueError, match="enrolment kind"):
        prefix.enrolment_key("0" * 32, "webcam")
