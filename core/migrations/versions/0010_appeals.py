"""appeals: every final outcome becomes a version (review_outcomes), with who reopened it and why; each
outcome already final becomes its session's version 1

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_outcomes",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("second_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", core.db.UTCDateTime(), nullable=False),
        sa.Column("reopened_by", sa.String(length=32), nullable=True),
        sa.Column("reopen_reason", sa.Text(), nullable=True),
        sa.Column("reopened_at", core.db.UTCDateTime(), nullable=True),
        sa.Column("platform_result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["reopened_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["second_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id", "version"),
    )
    # The outcomes made before versions existed: each is its session's first, final when it was finalised.
    op.execute(
        "INSERT INTO review_outcomes (session_id, version, outcome, decided_by, second_by, decided_at) "
        "SELECT session_id, 1, outcome, reviewer_id, second_reviewer_id, COALESCE(finalised_at, decided_at) "
        "FROM session_reviews WHERE status = 'final'"
    )


def downgrade() -> None:
    op.drop_table("review_outcomes")
