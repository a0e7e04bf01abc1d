"""streaming uploads: media uploaded while recorded (their size and SHA-256 known only at complete), and upload
tokens that open one session's uploads to a browser

Downgrading fails while a streaming file that never completed (its size still NULL) is stored: erase it first.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_tokens",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", core.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    with op.batch_alter_table("upload_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_tokens_session_id"), ["session_id"], unique=False)

    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("streaming", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.alter_column("declared_size", existing_type=sa.BigInteger(), nullable=True)
        batch_op.alter_column("declared_sha256", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.alter_column("declared_sha256", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("declared_size", existing_type=sa.BigInteger(), nullable=False)
        batch_op.drop_column("streaming")

    with op.batch_alter_table("upload_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_tokens_session_id"))

    op.drop_table("upload_tokens")
