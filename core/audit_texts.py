"""Free text in the audit trail, erasable without breaking the chain.

What reviewers and officers write about a session (a flag's note, an outcome's note, an appeal's grounds) may name
the candidate or their health, and an erasure must remove it (`core.erasure`). The chain cannot give anything
up: an entry that changed would no longer verify. So an entry does not hold such text. It holds a commitment,
`<field>_sha256`: the hex SHA-256 of a random 16-byte salt followed by the text's UTF-8 bytes. The salt and the
text are kept beside the chain, in `audit_texts`, keyed by the entry's seq and the field's name.

- While the text is kept, anyone can check it against the entry: `proctor audit verify` does, and names the first
  entry whose kept text was changed.
- Once erased, salt and text are gone and the commitment says nothing about what was written: without the salt,
  a guess at the text cannot be confirmed.

Entries recorded before this (migration 0017) keep their text in the entry itself, as recorded.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.tables import AuditEvent, AuditText

ERASED_TEXT: Final = "[erased with the recordings]"
COMMITMENT_SUFFIX: Final = "_sha256"
SALT_BYTES: Final = 16


@dataclass(frozen=True)
class FreeText:
    """A value for `core.audit.record` that is free text about a session: the entry commits to it, and the text
    is kept where an erasure can reach it."""

    text: str


@dataclass(frozen=True)
class KeptText:
    """Free text an entry will refer to, with the salt of its commitment."""

    field: str
    salt: bytes
    text: str

    @property
    def commitment(self) -> str:
        return commitment(self.salt, self.text)


@dataclass(frozen=True)
class TextMismatch:
    """A kept text that no longer matches the commitment in its entry (or whose entry has no such field)."""

    seq: int
    field: str


def commitment(salt: bytes, text: str) -> str:
    return hashlib.sha256(salt + text.encode("utf-8")).hexdigest()


def split_free_text(detail: Mapping[str, Any], session_id: str | None) -> tuple[dict[str, Any], list[KeptText]]:
    """`detail` as the entry holds it (each non-empty `FreeText` replaced by its commitment, an empty one by "")
    and the texts to keep beside the chain. Free text is always about a session: one without raises."""
    entry: dict[str, Any] = {}
    kept: list[KeptText] = []
    for field, value in detail.items():
        if not isinstance(value, FreeText):
            entry[field] = value
            continue
        if session_id is None:
            raise ValueError(f"audit field {field!r} is free text about a session: record it with the session_id")
        if not value.text:
            entry[field] = ""
            continue
        text = KeptText(field, secrets.token_bytes(SALT_BYTES), value.text)
        entry[field + COMMITMENT_SUFFIX] = text.commitment
        kept.append(text)
    return entry, kept


def keep(db: Session, seq: int, session_id: str, texts: Iterable[KeptText]) -> None:
    db.add_all(AuditText(seq=seq, field=t.field, session_id=session_id, salt=t.salt.hex(), text=t.text) for t in texts)


def erase_session_texts(db: Session, session_id: str, now: datetime) -> int:
    """Erase the free text of every entry about the session (salt and text); returns how many were erased."""
    erased: Any = db.execute(
        update(AuditText)
        .where(AuditText.session_id == session_id, AuditText.text.is_not(None))
        .values(salt=None, text=None, erased_at=now)
    )
    return int(erased.rowcount)


def readable_details(db: Session, events: Iterable[AuditEvent]) -> dict[int, dict[str, Any]]:
    """Each event's detail as a person reads it, by event id: every commitment replaced by the text it commits
    to, or by `ERASED_TEXT` once erased."""
    events = list(events)
    committed = [e.seq for e in events if any(k.endswith(COMMITMENT_SUFFIX) for k in e.detail)]
    kept: Iterable[AuditText] = db.scalars(select(AuditText).where(AuditText.seq.in_(committed))) if committed else []
    texts = {(t.seq, t.field): t.text for t in kept}
    readable: dict[int, dict[str, Any]] = {}
    for event in events:
        detail: dict[str, Any] = {}
        for key, value in event.detail.items():
            field = key.removesuffix(COMMITMENT_SUFFIX)
            if key.endswith(COMMITMENT_SUFFIX) and (event.seq, field) in texts:
                detail[field] = texts[(event.seq, field)] or ERASED_TEXT
            else:
                detail[key] = value
        readable[event.id] = detail
    return readable


def first_text_mismatch(db: Session) -> TextMismatch | None:
    """The kept text, lowest seq first, that no longer matches its entry's commitment; None when all match."""
    rows = db.execute(
        select(AuditText, AuditEvent.detail)
        .outerjoin(AuditEvent, AuditEvent.seq == AuditText.seq)
        .where(AuditText.text.is_not(None))
        .order_by(AuditText.seq, AuditText.field)
        .execution_options(yield_per=1000)
    )
    for text, detail in rows:
        expected = (detail or {}).get(text.field + COMMITMENT_SUFFIX)
        if text.salt is None or text.text is None or expected != commitment(bytes.fromhex(text.salt), text.text):
            return TextMismatch(text.seq, text.field)
    return None
