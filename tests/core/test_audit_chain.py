"""The audit trail's hash chain: tampered with directly in the database (after dropping the triggers that
would refuse it), `proctor audit verify` exits non-zero and names the first bad entry; anchors catch a trail
rebuilt from scratch or cut short; concurrent appends never fork the chain. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from click.testing import Result
from sqlalchemy import Connection, Engine, create_engine, insert, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core import audit
from core.audit import (
    GENESIS_HASH,
    Anchor,
    AnchorError,
    EntryFields,
    ProblemKind,
    StoredEntry,
    anchor_line,
    anchor_of,
    canonical_bytes,
    canonical_time,
    entry_hash,
    parse_anchor_line,
    verify_chain,
)
from core.db import make_engine, make_sessionmaker, migrate
from core.tables import AuditEvent
from proctor.cli import app
from tests.core.test_migrations import alembic_config

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEY = "auditors-own-anchor-key"
runner = CliRunner()

# ---------------------------------------------------------------------------------------------------------------
# The pure functions: the canonical form, the hash, the walk, the anchors


def test_the_canonical_form_and_hash_are_the_documented_ones() -> None:
    """Pinned: changing the serialisation would break every chain already written."""
    fields = EntryFields(
        seq=1,
        at=datetime(2026, 1, 2, 4, 4, 5, 6000, tzinfo=timezone(timedelta(hours=1))),  # 03:04:05.006 UTC
        actor="user:ana",
        action="view_recording",
        tenant_id="t1",
        session_id=None,
        ip="10.0.0.1",
        detail={"b": [1, 2.5], "a": "é"},
        prev_hash=GENESIS_HASH,
    )
    expected = (
        '{"action":"view_recording","actor":"user:ana","at":"2026-01-02T03:04:05.006000Z","detail":{"a":"é",'
        f'"b":[1,2.5]}},"ip":"10.0.0.1","prev_hash":"{"0" * 64}","seq":1,"session_id":null,"tenant_id":"t1"}}'
    ).encode()
    assert canonical_bytes(fields) == expected
    assert entry_hash(fields) == hashlib.sha256(expected).hexdigest()
    assert entry_hash(fields) == "f0557a3608bec39adb21b2db3d5f165c59754dfcb8e13cb210c6f898641b9540"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        canonical_time(datetime(2026, 1, 1))


def build_chain(n: int) -> list[StoredEntry]:
    """A valid in-memory chain of n entries, ids equal to seqs."""
    entries: list[StoredEntry] = []
    for seq in range(1, n + 1):
        fields = EntryFields(
            seq=seq,
            at=T0 + timedelta(minutes=seq),
            actor="user:rev",
            action="view_recording",
            tenant_id="t",
            session_id=f"s{seq}",
            ip=None,
            detail={"n": seq},
            prev_hash=entries[-1].hash if entries else GENESIS_HASH,
        )
        entries.append(StoredEntry(seq, fields, entry_hash(fields)))
    return entries


def sealed(entry: StoredEntry, **changes: object) -> StoredEntry:
    """`entry` with changed fields and its hash recomputed, as an attacker who knows the format writes it."""
    fields = replace(entry.fields, **changes)
    return StoredEntry(entry.id, fields, entry_hash(fields))


def edited(entry: StoredEntry) -> StoredEntry:
    """`entry` with another actor and its old hash."""
    return replace(entry, fields=replace(entry.fields, actor="user:mallory"))


Mutation = Callable[[list[StoredEntry]], list[StoredEntry]]
PURE_CASES: list[tuple[str, Mutation, ProblemKind, int]] = [
    # name, what the attacker does to the 5 entries, what the walk reports, at which entry id
    ("edit", lambda c: [*c[:2], edited(c[2]), *c[3:]], ProblemKind.HASH_MISMATCH, 3),
    ("delete", lambda c: [*c[:2], *c[3:]], ProblemKind.MISSING_PREDECESSOR, 4),
    ("delete the first", lambda c: c[1:], ProblemKind.MISSING_PREDECESSOR, 2),
    ("reorder", lambda c: [*c[:2], sealed(c[3], seq=3), sealed(c[2], seq=4), *c[4:]], ProblemKind.BROKEN_LINK, 4),
    ("fork", lambda c: [*c[:3], replace(sealed(c[3], actor="x"), id=9), *c[3:]], ProblemKind.BROKEN_LINK, 4),
    ("forged prev_hash", lambda c: [*c[:4], sealed(c[4], prev_hash=c[2].hash)], ProblemKind.BROKEN_LINK, 5),
]


@pytest.mark.parametrize(("mutate", "kind", "entry_id"), [c[1:] for c in PURE_CASES], ids=[c[0] for c in PURE_CASES])
def test_the_walk_names_the_first_bad_entry(mutate: Mutation, kind: ProblemKind, entry_id: int) -> None:
    result = verify_chain(mutate(build_chain(5)))
    assert result.problem is not None and (result.problem.kind, result.problem.entry_id) == (kind, entry_id)
    assert result.verified == [e.id for e in mutate(build_chain(5))].index(entry_id)


def test_an_intact_chain_and_its_anchors_verify() -> None:
    chain = build_chain(5)
    anchors = [anchor_of(chain[1], T0), anchor_of(chain[4], T0)]
    result = verify_chain(chain, anchors)
    assert result.ok and result.verified == 5 and result.head == chain[-1]
    assert verify_chain([]).ok


def test_anchors_catch_a_rebuilt_chain_and_a_cut_end() -> None:
    chain = build_chain(5)
    anchor = anchor_of(chain[3], T0)
    forged = [sealed(chain[0], actor="user:mallory")]
    for entry in chain[1:]:
        forged.append(sealed(entry, prev_hash=forged[-1].hash))
    assert verify_chain(forged).ok  # a chain re-computed from scratch checks out on its own ...
    mismatch = verify_chain(forged, [anchor])
    assert mismatch.problem is not None  # ... but not against an anchor taken before
    assert (mismatch.problem.kind, mismatch.problem.entry_id) == (ProblemKind.ANCHOR_MISMATCH, 4)
    cut = verify_chain(chain[:3], [anchor])
    assert cut.problem is not None and (cut.problem.kind, cut.problem.seq) == (ProblemKind.ANCHOR_MISSING, 4)
    assert cut.problem.at == chain[3].fields.at and "ends at seq 3" in cut.problem.explanation


def test_anchor_lines_round_trip_and_refuse_a_wrong_or_missing_signature() -> None:
    anchor = Anchor(entry_id=7, seq=5, hash="ab" * 32, at=T0, anchored_at=T0 + timedelta(days=1))
    assert parse_anchor_line(anchor_line(anchor, None), None) == anchor
    signed = anchor_line(anchor, KEY.encode())
    assert parse_anchor_line(signed, KEY.encode()) == anchor
    with pytest.raises(AnchorError, match="does not match"):
        parse_anchor_line(signed, b"another key")
    with pytest.raises(AnchorError, match="does not match"):
        parse_anchor_line(signed.replace('"seq":5', '"seq":4'), KEY.encode())
    with pytest.raises(AnchorError, match="not signed"):
        parse_anchor_line(anchor_line(anchor, None), KEY.encode())
    with pytest.raises(AnchorError, match="no key is set"):
        parse_anchor_line(signed, None)
    with pytest.raises(AnchorError, match="not an anchor line"):
        parse_anchor_line('{"seq": 5}', None)


# ---------------------------------------------------------------------------------------------------------------
# The trail in a real database, tampered with directly


@pytest.fixture
def trail_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own: these tests break the whole trail or migrate from an old revision, the run's
    PostgreSQL database is shared, and the SQLite one each test gets is already at the newest schema."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'trail.db'}"
        return
    server = create_engine(database_url, isolation_level="AUTOCOMMIT")
    name = f"proctor_audit_{uuid.uuid4().hex[:10]}"
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@dataclass
class Trail:
    url: str
    engine: Engine
    db: sessionmaker[Session]
    entries: list[StoredEntry]  # as written, ids equal to seqs

    def named(self, entry_id: int, seq: int) -> str:
        """How `proctor audit verify` names the entry with this id, now at this seq: with the time it was written
        at, or the forger's time for an entry that the fixture did not write."""
        written = [e.fields.at for e in self.entries if e.id == entry_id]
        at = written[0] if written else forged_fields(seq, GENESIS_HASH).at
        return f"entry id {entry_id} (seq {seq}, at {canonical_time(at)})"


def append(db: sessionmaker[Session], n: int, *, start: datetime, actor: str = "user:rev") -> None:
    with db() as session:  # several entries in one transaction chain from each other
        for i in range(n):
            audit.record(session, actor, "view_recording", at=start + timedelta(minutes=i), ip="10.0.0.9", n=i)
        session.commit()


@pytest.fixture
def trail(trail_url: str) -> Iterator[Trail]:
    migrate(trail_url)
    engine = make_engine(trail_url)
    db = make_sessionmaker(engine)
    append(db, 3, start=T0)
    for i in range(3):
        with db() as session:
            audit.record(session, "api:uni", "read_results", at=T0 + timedelta(hours=1, minutes=i), tenant_id="t", k=i)
            session.commit()
    with db() as session:
        entries = list(audit.read_chain(session))
    assert [(e.id, e.fields.seq) for e in entries] == [(n, n) for n in range(1, 7)]
    yield Trail(trail_url, engine, db, entries)
    engine.dispose()


def flat(output: str) -> str:
    """A message as words: typer draws usage errors in a box whose lines wrap wherever the path makes them."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def run_audit(url: str, *args: str, key: str | None = None) -> Result:
    env = {"PROCTOR_DATABASE_URL": url, "PROCTOR_AUDIT_ANCHOR_KEY": key, "PROCTOR_ENVIRONMENT": None}
    return runner.invoke(app, ["audit", *args], env=env)


def drop_guards(conn: Connection) -> None:
    """What the table's owner can always do: remove the triggers that refuse UPDATE, DELETE and TRUNCATE."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("DROP TRIGGER audit_events_no_update"))
        conn.execute(text("DROP TRIGGER audit_events_no_delete"))
    else:
        conn.execute(text("DROP TRIGGER audit_events_append_only ON audit_events"))
        conn.execute(text("DROP TRIGGER audit_events_no_truncate ON audit_events"))


def move(conn: Connection, seq: int, to: int) -> None:
    conn.execute(update(AuditEvent.__table__).where(AuditEvent.seq == seq).values(seq=to))


def forge(conn: Connection, fields: EntryFields) -> str:
    """Insert an entry whose own hash is right, as someone who read the specification would."""
    digest = entry_hash(fields)
    conn.execute(insert(AuditEvent.__table__).values(hash=digest, **vars(fields)))
    return digest


def forged_fields(seq: int, prev_hash: str) -> EntryFields:
    return EntryFields(
        seq, T0 + timedelta(days=1, minutes=seq), "user:mallory", "view_recording", None, None, None, {}, prev_hash
    )


def edit(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 3"))


def delete(conn: Connection) -> None:
    conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))


def swap(conn: Connection) -> None:
    move(conn, 3, -1)
    move(conn, 4, 3)
    move(conn, -1, 4)


def swap_contents(conn: Connection) -> None:
    """Exchange what two entries say, leaving their places and hashes."""
    table = AuditEvent.__table__
    said = {r.seq: r for r in conn.execute(select(table.c.seq, table.c.actor, table.c.action, table.c.detail))}
    for seq, other in ((3, 4), (4, 3)):
        conn.execute(
            update(table)
            .where(table.c.seq == seq)
            .values(actor=said[other].actor, action=said[other].action, detail=said[other].detail)
        )


def insert_between(conn: Connection) -> None:
    """Make room after seq 3 and insert a well-formed entry chained from it."""
    for seq in (6, 5, 4):
        move(conn, seq, seq + 1)
    prev = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 3")).scalar_one()
    forge(conn, forged_fields(4, prev))


def fork(conn: Connection) -> None:
    """A second entry chained from seq 4, appended at the end."""
    prev = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 4")).scalar_one()
    forge(conn, forged_fields(7, prev))


TAMPERING: list[tuple[str, Callable[[Connection], None], ProblemKind, int, int]] = [
    # name, what is done to the 6 entries, what verify reports, the named entry's id and its seq now
    ("update a row", edit, ProblemKind.HASH_MISMATCH, 3, 3),
    ("delete a row", delete, ProblemKind.MISSING_PREDECESSOR, 4, 4),
    ("swap two rows", swap, ProblemKind.HASH_MISMATCH, 4, 3),
    ("swap two rows' contents", swap_contents, ProblemKind.HASH_MISMATCH, 3, 3),
    ("insert a row", insert_between, ProblemKind.HASH_MISMATCH, 4, 5),
    ("fork the chain", fork, ProblemKind.BROKEN_LINK, 7, 7),
]


def test_an_untouched_trail_verifies(trail: Trail) -> None:
    verified = run_audit(trail.url, "verify")
    assert verified.exit_code == 0, verified.output
    assert "6 entries verified" in verified.stdout and trail.entries[-1].hash in verified.stdout


@pytest.mark.parametrize(
    ("tamper", "kind", "entry_id", "seq"), [c[1:] for c in TAMPERING], ids=[c[0] for c in TAMPERING]
)
def test_verify_names_the_first_bad_entry_after_tampering(
    trail: Trail, tamper: Callable[[Connection], None], kind: ProblemKind, entry_id: int, seq: int
) -> None:
    with trail.engine.begin() as conn:
        drop_guards(conn)
        tamper(conn)
    verified = run_audit(trail.url, "verify")
    assert verified.exit_code == 1, verified.output
    assert f"{trail.named(entry_id, seq)}: {kind}: " in verified.stderr


def rechain(conn: Connection, from_seq: int) -> None:
    """Recompute every hash from `from_seq` on, as someone covering an edit would."""
    with Session(bind=conn) as session:
        prev = GENESIS_HASH
        for event in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all():
            if event.seq >= from_seq:
                fields = EntryFields(
                    event.seq,
                    event.at,
                    event.actor,
                    event.action,
                    event.tenant_id,
                    event.session_id,
                    event.ip,
                    event.detail,
                    prev,
                )
                event.prev_hash, event.hash = prev, entry_hash(fields)
            prev = event.hash
        session.flush()


def test_an_edit_covered_by_a_recomputed_chain_is_caught_by_the_anchor(trail: Trail, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    assert run_audit(trail.url, "anchor", "--append-to", str(anchors)).exit_code == 0
    with trail.engine.begin() as conn:
        drop_guards(conn)
        edit(conn)
        rechain(conn, 3)
    assert run_audit(trail.url, "verify").exit_code == 0  # the chain alone cannot tell
    verified = run_audit(trail.url, "verify", "--anchor", str(anchors))
    assert verified.exit_code == 1, verified.output
    assert f"{trail.named(6, 6)}: {ProblemKind.ANCHOR_MISMATCH}: " in verified.stderr


@pytest.mark.parametrize("forged_entries", [3, 8], ids=["shorter", "longer"])
def test_a_truncated_and_rebuilt_trail_is_caught_by_the_anchor(
    trail: Trail, tmp_path: Path, forged_entries: int
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    anchored = run_audit(trail.url, "anchor", "--append-to", str(anchors), key=KEY)
    assert anchored.exit_code == 0, anchored.output
    assert '"signature":' in anchored.stdout and anchors.read_text() == anchored.stdout
    postgres = trail.engine.dialect.name == "postgresql"
    if postgres:
        with pytest.raises(DBAPIError, match="append-only"), trail.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_events"))
    with trail.engine.begin() as conn:
        drop_guards(conn)
        conn.execute(text("TRUNCATE audit_events" if postgres else "DELETE FROM audit_events"))
        prev = GENESIS_HASH
        for seq in range(1, forged_entries + 1):
            prev = forge(conn, forged_fields(seq, prev))
    assert run_audit(trail.url, "verify").exit_code == 0  # a fresh, well-formed chain checks out on its own
    verified = run_audit(trail.url, "verify", "--anchor", str(anchors), key=KEY)
    assert verified.exit_code == 1, verified.output
    kind = ProblemKind.ANCHOR_MISSING if forged_entries < 6 else ProblemKind.ANCHOR_MISMATCH
    assert f": {kind}: " in verified.stderr
    if forged_entries < 6:  # the anchored entry itself is named, as the anchor recorded it
        assert trail.named(6, 6) in verified.stderr and "ends at seq 3" in verified.stderr
    else:
        assert "(seq 6, at " in verified.stderr


def test_anchors_survive_later_appends_and_refuse_another_key(trail: Trail, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    for _ in range(2):
        assert run_audit(trail.url, "anchor", "--append-to", str(anchors), key=KEY).exit_code == 0
        append(trail.db, 2, start=T0 + timedelta(days=2))
    verified = run_audit(trail.url, "verify", "--anchor", str(anchors), key=KEY)
    assert verified.exit_code == 0, verified.output
    assert "10 entries verified" in verified.stdout and "2 anchor(s)" in verified.stdout
    other = run_audit(trail.url, "verify", "--anchor", str(anchors), key="not the key")
    assert other.exit_code == 2 and "does not match PROCTOR_AUDIT_ANCHOR_KEY" in flat(other.output)
    unsigned = run_audit(trail.url, "verify", "--anchor", str(anchors))
    assert unsigned.exit_code == 2 and "set PROCTOR_AUDIT_ANCHOR_KEY" in flat(unsigned.output)


def test_anchor_refuses_an_empty_or_broken_trail(trail_url: str) -> None:
    migrate(trail_url)
    empty = run_audit(trail_url, "anchor")
    assert empty.exit_code == 1 and "the audit trail is empty" in empty.stderr
    engine = create_engine(trail_url)
    db = sessionmaker(engine)
    append(db, 2, start=T0)
    with engine.begin() as conn:
        drop_guards(conn)
        conn.execute(text("UPDATE audit_events SET ip = '192.0.2.1' WHERE seq = 1"))
    engine.dispose()
    broken = run_audit(trail_url, "anchor")
    assert broken.exit_code == 1 and "refusing to anchor a broken audit trail: entry id 1" in broken.stderr


def test_concurrent_appends_never_fork_the_chain(trail: Trail) -> None:
    threads, each = 4, 8
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(each):
                with trail.db() as session:
                    session.execute(select(AuditEvent.id).limit(1)).all()  # a read first, as the review pages do
                    audit.record(session, f"user:w{n}", "view_recording", at=T0 + timedelta(days=3, seconds=i), i=i)
                    session.commit()
        except BaseException as exc:  # collected, re-raised below in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with trail.db() as session:
        result = audit.verify_trail(session)
    assert result.ok and result.verified == 6 + threads * each


def test_the_migration_chains_existing_entries_and_keeps_the_guards(trail_url: str) -> None:
    config = alembic_config(trail_url)
    command.upgrade(config, "0008")
    engine = create_engine(trail_url)
    with engine.begin() as conn:
        for at, actor in (
            ("2026-11-02 10:00:00", "user:b"),
            ("2026-11-01 10:00:00", "user:a"),
            ("2026-11-03 09:30:00.250000", "user:c"),
        ):
            conn.execute(
                text("INSERT INTO audit_events (at, actor, action, detail) VALUES (:at, :actor, 'login', :d)"),
                {"at": at, "actor": actor, "d": '{"why": "old"}'},
            )
    migrate(trail_url)
    db = sessionmaker(engine)
    with db() as session:
        assert audit.verify_trail(session).verified == 3
        chained = [(e.id, e.fields.seq, e.fields.actor) for e in audit.read_chain(session)]
    assert chained == [(1, 1, "user:b"), (2, 2, "user:a"), (3, 3, "user:c")]  # in the order they were written
    append(db, 1, start=T0)
    with db() as session:
        assert audit.verify_trail(session).verified == 4
    statements = ["UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    command.downgrade(config, "0008")
    with engine.connect() as conn:
        assert "seq" not in {c["name"] for c in inspect(conn).get_columns("audit_events")}
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events"))
    engine.dispose()
