"""Free text in the audit trail: kept beside the chain, erasable, and checked against the entries' commitments.
An erasure leaves no note anywhere in the trail, the chain still verifies, and a kept note changed behind the
application's back is named by `proctor audit verify`. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.audit import ProblemKind, verify_trail
from core.audit_texts import ERASED_TEXT, FreeText, erase_session_texts, readable_details
from core.tables import AuditEvent, AuditText
from tests.core.test_audit_chain import Trail, run_audit, trail, trail_url

__all__ = ["trail", "trail_url"]  # the fixtures this module uses, as test_audit_chain.py defines them

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
NAMED = "Ada Lovelace's sister answered for her"


@pytest.fixture
def notes(trail: Trail) -> Iterator[sessionmaker[Session]]:
    """The trail with two notes about session s1 (a flag's, an outcome's), an appeal's grounds about s2, and an
    empty note: seqs 7 to 10."""
    with trail.db() as db:
        audit.record(db, "user:ana", "flag_decision", at=T0, session_id="s1", note=FreeText(NAMED), decision="x")
        audit.record(db, "user:ana", "outcome", at=T0 + timedelta(seconds=1), session_id="s1", note=FreeText(NAMED))
        audit.record(db, "user:olu", "review_reopened", at=T0, session_id="s2", reason=FreeText("medical grounds"))
        audit.record(db, "user:ana", "outcome", at=T0, session_id="s3", note=FreeText(""), outcome="Clean")
        db.commit()
    yield trail.db


def entries(db: sessionmaker[Session]) -> list[AuditEvent]:
    with db() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.seq > 6).order_by(AuditEvent.seq)))


def test_an_entry_commits_to_its_note_which_is_kept_beside_the_chain(notes: sessionmaker[Session]) -> None:
    flag, outcome, reopened, empty = entries(notes)
    assert NAMED not in str(flag.detail) and set(flag.detail) == {"note_sha256", "decision"}
    assert empty.detail == {"note": "", "outcome": "Clean"}  # nothing written, nothing kept
    assert flag.detail["note_sha256"] != outcome.detail["note_sha256"], "salted: equal notes do not show as equal"
    with notes() as db:
        kept = {(t.seq, t.field): t for t in db.scalars(select(AuditText))}
        assert sorted(kept) == [(7, "note"), (8, "note"), (9, "reason")]
        salt = bytes.fromhex(kept[(7, "note")].salt or "")
        assert flag.detail["note_sha256"] == hashlib.sha256(salt + NAMED.encode()).hexdigest()  # as documented
        readable = readable_details(db, [flag, reopened, empty])
    assert readable[flag.id] == {"note": NAMED, "decision": "x"}
    assert readable[reopened.id] == {"reason": "medical grounds"}
    assert readable[empty.id] == empty.detail
    assert verify_trail_ok(notes)


def test_an_erasure_removes_the_sessions_notes_and_the_chain_still_verifies(notes: sessionmaker[Session]) -> None:
    with notes() as db:
        assert erase_session_texts(db, "s1", T0) == 2
        db.commit()
        assert erase_session_texts(db, "s1", T0) == 0  # once
        raw = db.execute(text("SELECT detail FROM audit_events")).scalars().all()
        kept = db.execute(text("SELECT text, salt FROM audit_texts WHERE session_id = 's1'")).all()
        flag, outcome, reopened, _ = entries(notes)
        readable = readable_details(db, [flag, outcome, reopened])
    assert not any(NAMED in str(detail) for detail in raw)
    assert kept == [(None, None), (None, None)]
    assert readable[flag.id]["note"] == readable[outcome.id]["note"] == ERASED_TEXT
    assert readable[reopened.id]["reason"] == "medical grounds", "another session's text stays"
    assert verify_trail_ok(notes)


def test_verify_names_the_entry_whose_kept_note_was_changed(trail: Trail, notes: sessionmaker[Session]) -> None:
    with notes() as db:
        db.execute(update(AuditText).where(AuditText.seq == 8).values(text="nothing to see"))
        db.commit()
    verified = run_audit(trail.url, "verify")
    assert verified.exit_code == 1, verified.output
    assert f"{named(notes, 8)}: {ProblemKind.TEXT_MISMATCH}: " in verified.stderr
    assert "'note'" in verified.stderr


def test_free_text_is_always_about_a_session(notes: sessionmaker[Session]) -> None:
    with notes() as db, pytest.raises(ValueError, match="record it with the session_id"):
        audit.record(db, "user:ana", "outcome", at=T0, note=FreeText("no session"))


def verify_trail_ok(db: sessionmaker[Session]) -> bool:
    with db() as s:
        return verify_trail(s).ok


def named(db: sessionmaker[Session], seq: int) -> str:
    with db() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.seq == seq)).one()
        return f"entry id {event.id} (seq {seq}, at {audit.canonical_time(event.at)})"
