"""enrolment: candidates' reference faces, and why a media file was rejected

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason_code", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))

    op.create_table(
        "candidate_enrolments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("candidate_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("descriptor", sa.JSON(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("face_size_px", sa.Float(), nullable=False),
        sa.Column("brightness", sa.Float(), nullable=False),
        sa.Column("sharpness", sa.Float(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("candidate_enrolments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_candidate_enrolments_candidate", ["tenant_id", "candidate_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_candidate_enrolments_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("candidate_enrolments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_candidate_enrolments_session_id"))
        batch_op.drop_index("ix_candidate_enrolments_candidate")
    op.drop_table("candidate_enrolments")
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_column("reason")
        batch_op.drop_column("reason_code")
