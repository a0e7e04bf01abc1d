"""The append-only audit trail: every view of a recording, every decision and every erasure, with who and when.

Actors are written as `user:<username>`, `api:<tenant slug>`, `system:<job>` or `cli:<OS user>` (operators'
commands), and `anonymous` for a request refused to no one signed in. Every stage appends through `record`: the
review UI its views and decisions, the platform API its reads, `core.erasure` the erasures, and
`review_ui.refusal_audit` the refused requests of both, in bounded volume.

The database refuses UPDATE and DELETE on the table (and TRUNCATE on PostgreSQL), but whoever owns the table
can drop those triggers, so the trail is also a hash chain that `proctor audit verify` checks end to end. The
chain is specified here so that an auditor can re-implement the check without this code:

- Entries are ordered by `seq`, which runs 1, 2, 3, ... with no gaps. `id` is only a storage key: not hashed.
- An entry's hash is the lowercase hex SHA-256 of the UTF-8 bytes of the JSON object with exactly the keys
  `action`, `actor`, `at`, `detail`, `ip`, `prev_hash`, `seq`, `session_id` and `tenant_id` (absent values are
  `null`), written with the keys of every object sorted by code point, no whitespace (`,` and `:` separators),
  non-ASCII characters as themselves (no `\\u` escapes) and numbers as Python writes them: in Python,
  `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)`.
- `at` is the entry's time in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fractional digits).
- `prev_hash` of the entry with seq 1 is the genesis value, 64 zeros; every other entry's `prev_hash` is the
  hash of the entry with the seq one lower.

A chain that checks out can still have been rebuilt whole by someone who read this: anchors
(`anchor_line`) close that gap. An anchor is the head's `entry_id`, `seq`, `hash` and `at`, plus `anchored_at`,
kept by the auditor outside the database; its `signature`, when present, is the hex HMAC-SHA256 under
`PROCTOR_AUDIT_ANCHOR_KEY` of the other fields written as above. An anchored seq must still be in the chain
with the same hash: nothing before it was rewritten and nothing was cut from the end.

Appends never fork the chain: `record` reads the head and inserts after it under a lock held until the
caller's transaction ends (PostgreSQL: the transaction-scoped advisory lock `ADVISORY_LOCK_KEY`; SQLite: the
database's write lock, taken with BEGIN IMMEDIATE), and a unique index on `seq` refuses a second entry in the
same place whatever happens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.audit_texts import first_text_mismatch, keep, split_free_text
from core.tables import AuditEvent

log = logging.getLogger(__name__)

GENESIS_HASH: Final = "0" * 64
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
# The PostgreSQL advisory lock that serialises appends: the ASCII bytes of "proctor" as one bigint.
ADVISORY_LOCK_KEY: Final = int.from_bytes(b"proctor", "big")
_READ_BATCH: Final = 1000


class ProblemKind(StrEnum):
    HASH_MISMATCH = "hash mismatch"
    BROKEN_LINK = "broken link"
    MISSING_PREDECESSOR = "missing predecessor"
    ANCHOR_MISMATCH = "anchor mismatch"
    ANCHOR_MISSING = "anchored entry missing"
    TEXT_MISMATCH = "kept text changed"


@dataclass(frozen=True)
class EntryFields:
    """What an entry's hash covers: its content, its place in the chain and the hash of the entry before it."""

    seq: int
    at: datetime
    actor: str
    action: str
    tenant_id: str | None
    session_id: str | None
    ip: str | None
    detail: dict[str, Any]
    prev_hash: str


@dataclass(frozen=True)
class StoredEntry:
    """An entry as the database holds it: its storage id, its fields and the hash written beside them."""

    id: int
    fields: EntryFields
    hash: str


@dataclass(frozen=True)
class Anchor:
    """The head of the chain at `anchored_at`, as an auditor keeps it outside the database."""

    entry_id: int
    seq: int
    hash: str
    at: datetime
    anchored_at: datetime


@dataclass(frozen=True)
class Problem:
    """The first entry that fails the check, and what is wrong with it."""

    kind: ProblemKind
    entry_id: int
    seq: int
    at: datetime
    explanation: str

    def describe(self) -> str:
        return (
            f"entry id {self.entry_id} (seq {self.seq}, at {canonical_time(self.at)}): {self.kind}: {self.explanation}"
        )


@dataclass(frozen=True)
class Verification:
    """How many entries checked out before the first problem (all of them when there is none), and the last."""

    verified: int
    head: StoredEntry | None
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


class AnchorError(ValueError):
    """An anchor line that cannot be used: malformed, unsigned where a key is set, or with a wrong signature."""


def canonical_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"refusing a naive datetime {at!r} in the audit chain: pass a timezone-aware UTC time")
    return at.astimezone(UTC).strftime(TIME_FORMAT)


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def canonical_bytes(fields: EntryFields) -> bytes:
    """The bytes an entry's hash is taken over (the module docstring specifies them)."""
    return _canonical_json(
        {
            "seq": fields.seq,
            "at": canonical_time(fields.at),
            "actor": fields.actor,
            "action": fields.action,
            "tenant_id": fields.tenant_id,
            "session_id": fields.session_id,
            "ip": fields.ip,
            "detail": fields.detail,
            "prev_hash": fields.prev_hash,
        }
    )


def entry_hash(fields: EntryFields) -> str:
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def _short(digest: str) -> str:
    return digest[:16] + "…"


def _check_link(entry: StoredEntry, previous: StoredEntry | None) -> Problem | None:
    """Is this entry intact, and does it follow `previous` (None: it should be the first)?"""
    fields = entry.fields

    def problem(kind: ProblemKind, explanation: str) -> Problem:
        return Problem(kind, entry.id, fields.seq, fields.at, explanation)

    recomputed = entry_hash(fields)
    if recomputed != entry.hash:
        return problem(
            ProblemKind.HASH_MISMATCH,
            f"its fields hash to {_short(recomputed)} but it stores {_short(entry.hash)}: it was edited after it "
            "was written",
        )
    expected_seq = 1 if previous is None else previous.fields.seq + 1
    if fields.seq > expected_seq:
        return problem(
            ProblemKind.MISSING_PREDECESSOR,
            f"the entries with seq {expected_seq} to {fields.seq - 1} are missing: they were deleted",
        )
    if previous is not None and fields.seq < expected_seq:
        return problem(
            ProblemKind.BROKEN_LINK,
            f"it claims seq {fields.seq}, already taken by entry id {previous.id}: an entry was inserted or the "
            "chain forked",
        )
    expected_prev = GENESIS_HASH if previous is None else previous.hash
    if fields.prev_hash != expected_prev:
        before = "the genesis value" if previous is None else f"entry id {previous.id} (seq {previous.fields.seq})"
        return problem(
            ProblemKind.BROKEN_LINK,
            f"it chains from {_short(fields.prev_hash)} but {before} is {_short(expected_prev)}: an entry was "
            "inserted, replaced or moved",
        )
    return None


def _check_anchor(entry: StoredEntry, anchor: Anchor) -> Problem | None:
    if entry.hash == anchor.hash:
        return None
    return Problem(
        ProblemKind.ANCHOR_MISMATCH,
        entry.id,
        entry.fields.seq,
        entry.fields.at,
        f"the anchor taken at {canonical_time(anchor.anchored_at)} holds {_short(anchor.hash)} for seq {anchor.seq} "
        f"(entry id {anchor.entry_id}) but the trail now has {_short(entry.hash)}: the trail up to here was "
        "rewritten and re-chained, or rebuilt from scratch",
    )


def verify_chain(entries: Iterable[StoredEntry], anchors: Sequence[Anchor] = ()) -> Verification:
    """Walk `entries` in seq order and stop at the first one that is edited, missing its predecessor, out of
    place, or different from an anchor; an anchored seq the walk never reaches means the end was cut off."""
    pending: defaultdict[int, list[Anchor]] = defaultdict(list)
    for anchor in anchors:
        pending[anchor.seq].append(anchor)
    previous: StoredEntry | None = None
    verified = 0
    for entry in entries:
        problem = _check_link(entry, previous)
        for anchor in pending.pop(entry.fields.seq, []):
            problem = problem or _check_anchor(entry, anchor)
        if problem is not None:
            return Verification(verified, previous, problem)
        previous, verified = entry, verified + 1
    if pending:
        lost = pending[min(pending)][0]
        ends = "is empty" if previous is None else f"ends at seq {previous.fields.seq}"
        explanation = (
            f"the anchor taken at {canonical_time(lost.anchored_at)} holds this entry but the trail {ends}: entries "
            "were cut from the end, or the trail was rebuilt"
        )
        return Verification(
            verified, previous, Problem(ProblemKind.ANCHOR_MISSING, lost.entry_id, lost.seq, lost.at, explanation)
        )
    return Verification(verified, previous, None)


def anchor_of(head: StoredEntry, anchored_at: datetime) -> Anchor:
    return Anchor(head.id, head.fields.seq, head.hash, head.fields.at, anchored_at)


def _anchor_signature(body: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical_json(body), hashlib.sha256).hexdigest()


def anchor_line(anchor: Anchor, key: bytes | None) -> str:
    """One JSON line for the auditor to keep, signed when there is a key."""
    body: dict[str, Any] = {
        "entry_id": anchor.entry_id,
        "seq": anchor.seq,
        "hash": anchor.hash,
        "at": canonical_time(anchor.at),
        "anchored_at": canonical_time(anchor.anchored_at),
    }
    if key is not None:
        body["signature"] = _anchor_signature(body, key)
    return _canonical_json(body).decode()


def parse_anchor_line(line: str, key: bytes | None) -> Anchor:
    """Read an `anchor_line` back; with a key, only a line signed under that key is accepted."""
    try:
        body = json.loads(line)
        signature = body.pop("signature", None)
        anchor = Anchor(
            entry_id=int(body["entry_id"]),
            seq=int(body["seq"]),
            hash=str(body["hash"]),
            at=datetime.strptime(body["at"], TIME_FORMAT).replace(tzinfo=UTC),
            anchored_at=datetime.strptime(body["anchored_at"], TIME_FORMAT).replace(tzinfo=UTC),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise AnchorError(
            f"not an anchor line ({type(exc).__name__}: {exc}): expected the JSON object `proctor audit anchor` "
            "prints, with entry_id, seq, hash, at and anchored_at"
        ) from None
    if key is None and signature is not None:
        raise AnchorError("the anchor is signed but no key is set: set PROCTOR_AUDIT_ANCHOR_KEY to check it")
    if key is not None:
        if signature is None:
            raise AnchorError(
                "the anchor is not signed but PROCTOR_AUDIT_ANCHOR_KEY is set: use a signed anchor, or unset the key "
                "to compare an unsigned one"
            )
        if not hmac.compare_digest(str(signature), _anchor_signature(body, key)):
            raise AnchorError(
                "the anchor's signature does not match PROCTOR_AUDIT_ANCHOR_KEY: the anchor was altered or signed "
                "under another key"
            )
    return anchor


def _lock_chain(db: Session) -> None:
    """Hold the chain until the caller's transaction ends, so the head read next is still the head at commit
    and two appends never chain from the same entry."""
    connection = db.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    elif dialect == "sqlite":
        driver: Any = connection.connection.driver_connection
        if not driver.in_transaction:  # pysqlite only begins at the first write: take the write lock now
            driver.execute("BEGIN IMMEDIATE")
    else:
        raise RuntimeError(f"the audit chain serialises appends on PostgreSQL and SQLite only, not on {dialect}")


def _stored(event: AuditEvent) -> StoredEntry:
    fields = EntryFields(
        seq=event.seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        tenant_id=event.tenant_id,
        session_id=event.session_id,
        ip=event.ip,
        detail=event.detail,
        prev_hash=event.prev_hash,
    )
    return StoredEntry(event.id, fields, event.hash)


def record(
    db: Session,
    actor: str,
    action: str,
    *,
    at: datetime,
    tenant_id: str | None = None,
    session_id: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    """Append an entry to the chain in the caller's transaction. The chain stays locked until that transaction
    ends, so record the audit entry last, just before committing. A `FreeText` value (a note, an appeal's
    grounds) is kept beside the chain, erasable, and the entry commits to it (`core.audit_texts`)."""
    detail, texts = split_free_text(detail, session_id)
    _lock_chain(db)
    head = db.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    fields = EntryFields(
        seq=1 if head is None else head.seq + 1,
        at=at,
        actor=actor,
        action=action,
        tenant_id=tenant_id,
        session_id=session_id,
        ip=ip,
        detail=json.loads(_canonical_json(detail)),  # exactly what the JSON column will give back
        prev_hash=GENESIS_HASH if head is None else head.hash,
    )
    db.add(
        AuditEvent(
            seq=fields.seq,
            at=at,
            actor=actor,
            action=action,
            tenant_id=tenant_id,
            session_id=session_id,
            ip=ip,
            detail=fields.detail,
            prev_hash=fields.prev_hash,
            hash=entry_hash(fields),
        )
    )
    if texts and session_id is not None:
        keep(db, fields.seq, session_id, texts)
    db.flush()  # a second entry in this transaction chains from this one


def read_chain(db: Session) -> Iterator[StoredEntry]:
    """Every entry in seq order, read in batches."""
    events = db.scalars(
        select(AuditEvent).order_by(AuditEvent.seq, AuditEvent.id).execution_options(yield_per=_READ_BATCH)
    )
    for event in events:
        yield _stored(event)


def chain_head(db: Session) -> StoredEntry | None:
    event = db.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()
    return None if event is None else _stored(event)


def verify_trail(db: Session, anchors: Sequence[Anchor] = ()) -> Verification:
    """Check the whole trail in the database against its chain and `anchors`, then the free text kept beside it
    against the entries' commitments, and log the outcome."""
    verification = verify_chain(read_chain(db), anchors)
    mismatch = first_text_mismatch(db) if verification.problem is None else None
    if mismatch is not None:
        event = db.scalars(select(AuditEvent).where(AuditEvent.seq == mismatch.seq)).first()
        problem = Problem(
            ProblemKind.TEXT_MISMATCH, event.id if event else 0, mismatch.seq, event.at if event else datetime.now(UTC),
            f"the {mismatch.field!r} kept beside this entry no longer matches the entry's commitment to it: the text "
            "was changed after it was recorded",
        )  # fmt: skip
        verification = Verification(verification.verified, verification.head, problem)
    head = verification.head
    fields = {"entries_verified": verification.verified, "head_seq": None if head is None else head.fields.seq}
    if verification.problem is None:
        log.info("audit trail verified", extra={**fields, "anchors": len(anchors)})
    else:
        problem = verification.problem
        log.error(
            "audit trail broken",
            extra={**fields, "entry_id": problem.entry_id, "seq": problem.seq, "problem": problem.kind.value},
        )
    return verification
