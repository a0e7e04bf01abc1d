"""audit texts: free text about a session (notes, an appeal's grounds) kept beside the audit chain, erasable, the
entry holding a salted commitment to it (`core.audit_texts`)

Entries already recorded keep their text in the entry: changing them would break the chain. Nothing else changes.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_texts",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("erased_at", core.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("seq", "field"),
    )
    with op.batch_alter_table("audit_texts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_texts_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_texts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_texts_session_id"))
    op.drop_table("audit_texts")
