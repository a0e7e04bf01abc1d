"""segments, processing progress and risk

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("start_ms", sa.Integer(), nullable=False),
        sa.Column("end_ms", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("peak_ms", sa.Integer(), nullable=False),
        sa.Column("evidence_keys", sa.JSON(), nullable=False),
        sa.Column("detector_versions", sa.JSON(), nullable=False),
        sa.Column("pipeline_version", sa.String(length=32), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.create_index("ix_segments_session_start", ["session_id", "start_ms"], unique=False)

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chunks_total", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("chunks_done", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("risk_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("review_priority", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("results_prefix", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("pipeline_version", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("processed_at", core.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("processed_at")
        batch_op.drop_column("pipeline_version")
        batch_op.drop_column("results_prefix")
        batch_op.drop_column("review_priority")
        batch_op.drop_column("risk_score")
        batch_op.drop_column("chunks_done")
        batch_op.drop_column("chunks_total")

    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_index("ix_segments_session_start")

    op.drop_table("segments")
