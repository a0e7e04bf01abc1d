"""the audit trail becomes a hash chain: seq, prev_hash and hash on every entry, back-filled in id order;
PostgreSQL also refuses TRUNCATE on it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db
from core.audit import GENESIS_HASH, EntryFields, entry_hash

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 1000
SQLITE_GUARDS = ("UPDATE", "DELETE")

audit_events = sa.table(
    "audit_events",
    sa.column("id", sa.Integer()),
    sa.column("at", core.db.UTCDateTime()),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("tenant_id", sa.String()),
    sa.column("session_id", sa.String()),
    sa.column("ip", sa.String()),
    sa.column("detail", sa.JSON()),
    sa.column("seq", sa.Integer()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def _drop_sqlite_guards() -> None:
    for verb in SQLITE_GUARDS:
        op.execute(f"DROP TRIGGER audit_events_no_{verb.lower()}")


def _create_sqlite_guards() -> None:
    """The triggers of 0003; SQLite loses them when a batch operation rebuilds the table."""
    for verb in SQLITE_GUARDS:
        op.execute(
            f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
        )


def _backfill() -> None:
    """Chain the existing entries in the order they were written (their ids)."""
    bind = op.get_bind()
    write = (
        sa.update(audit_events)
        .where(audit_events.c.id == sa.bindparam("row_id"))
        .values(seq=sa.bindparam("new_seq"), prev_hash=sa.bindparam("new_prev"), hash=sa.bindparam("new_hash"))
    )
    prev_hash, seq, last_id = GENESIS_HASH, 0, -1
    while rows := bind.execute(
        sa.select(audit_events).where(audit_events.c.id > last_id).order_by(audit_events.c.id).limit(BATCH)
    ).all():
        params = []
        for row in rows:
            seq += 1
            fields = EntryFields(
                seq=seq,
                at=row.at,
                actor=row.actor,
                action=row.action,
                tenant_id=row.tenant_id,
                session_id=row.session_id,
                ip=row.ip,
                detail=row.detail,
                prev_hash=prev_hash,
            )
            digest = entry_hash(fields)
            params.append({"row_id": row.id, "new_seq": seq, "new_prev": prev_hash, "new_hash": digest})
            prev_hash = digest
        bind.execute(write, params)
        last_id = rows[-1].id


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _drop_sqlite_guards()
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    _backfill()
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index("ix_audit_events_seq", ["seq"], unique=True)
    if dialect == "sqlite":
        _create_sqlite_guards()
    elif dialect == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _drop_sqlite_guards()
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_seq")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    if dialect == "sqlite":
        _create_sqlite_guards()
