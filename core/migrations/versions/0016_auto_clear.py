"""auto-clear: an outcome a system actor decided (session_reviews and review_outcomes.decided_by_system), and the
sessions an exam's auto-clear sent to reviewers as quality-control samples (sessions.qc_sample)

Existing outcomes were all decided by people (the new column is NULL); no existing session is a QC sample.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("qc_sample", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("session_reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decided_by_system", sa.String(length=64), nullable=True))
    with op.batch_alter_table("review_outcomes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decided_by_system", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_outcomes", schema=None) as batch_op:
        batch_op.drop_column("decided_by_system")
    with op.batch_alter_table("session_reviews", schema=None) as batch_op:
        batch_op.drop_column("decided_by_system")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("qc_sample")
