"""openedx: the REST proctoring backend's clients, exams, attempts and used JWT ids; callbacks a session owes
besides the tenant's webhook; a channel and credential on each outbox delivery; sign-ins narrower than their user

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edx_clients",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("lms_url", sa.String(length=1000), nullable=False),
        sa.Column("lms_client_id", sa.String(length=200), nullable=True),
        sa.Column("lms_secret_sealed", sa.Text(), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", core.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id"),
    )
    with op.batch_alter_table("edx_clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_edx_clients_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "edx_exams",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("client_pk", sa.String(length=32), nullable=False),
        sa.Column("lms_exam_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("is_practice", sa.Boolean(), nullable=False),
        sa.Column("is_proctored", sa.Boolean(), nullable=False),
        sa.Column("exam_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_pk"], ["edx_clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["exam_id"], ["exams.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_pk", "lms_exam_id"),
    )
    with op.batch_alter_table("edx_exams", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_edx_exams_course_id"), ["course_id"], unique=False)

    op.create_table(
        "edx_token_ids",
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("client_pk", sa.String(length=32), nullable=False),
        sa.Column("expires_at", core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_pk"], ["edx_clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("jti"),
    )
    op.create_table(
        "edx_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("edx_exam_pk", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(), nullable=False),
        sa.Column("recorder_seen_at", core.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["edx_exam_pk"], ["edx_exams.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("edx_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_edx_attempts_edx_exam_pk"), ["edx_exam_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_edx_attempts_user_id"), ["user_id"], unique=False)

    op.create_table(
        "session_callbacks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=48), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "event", "channel"),
    )
    with op.batch_alter_table("session_callbacks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_session_callbacks_session_id"), ["session_id"], unique=False)

    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope_exam_ids", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("scope_session_id", sa.String(length=32), nullable=True))

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=16), server_default="webhook", nullable=False))
        batch_op.add_column(sa.Column("ref", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_column("scope_session_id")
        batch_op.drop_column("scope_exam_ids")

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_column("ref")
        batch_op.drop_column("channel")

    with op.batch_alter_table("session_callbacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_callbacks_session_id"))

    op.drop_table("session_callbacks")
    with op.batch_alter_table("edx_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edx_attempts_user_id"))
        batch_op.drop_index(batch_op.f("ix_edx_attempts_edx_exam_pk"))

    op.drop_table("edx_attempts")
    op.drop_table("edx_token_ids")
    with op.batch_alter_table("edx_exams", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edx_exams_course_id"))

    op.drop_table("edx_exams")
    with op.batch_alter_table("edx_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edx_clients_tenant_id"))

    op.drop_table("edx_clients")
