"""tenant quotas: a tenant's own limits on open sessions, bytes in flight and storage (NULL: the server's default),
and the bounds of its bytes in flight and stored that the checks keep

Existing tenants keep the server's defaults; their bounds start NULL, counted exactly at their first check.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_open_sessions", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quota_in_flight_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("quota_storage_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("in_flight_bytes_bound", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("stored_bytes_bound", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("stored_bytes_bound")
        batch_op.drop_column("in_flight_bytes_bound")
        batch_op.drop_column("quota_storage_bytes")
        batch_op.drop_column("quota_in_flight_bytes")
        batch_op.drop_column("quota_open_sessions")
