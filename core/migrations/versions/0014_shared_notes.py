"""shared notes: a reviewer's note reaches the platform only when marked for it (flag decisions, the outcome's
note, the second reviewer's note)

Existing notes migrate as internal. What was already prepared for the platform but is still held here is made to
agree: the results kept for reviews under appeal (`review_outcomes.platform_result`), and the bodies of webhooks
not yet delivered, lose their notes and comments. What a platform already received cannot be taken back.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_KEPT_RESULTS = sa.table(
    "review_outcomes",
    sa.column("session_id", sa.String()),
    sa.column("version", sa.Integer()),
    sa.column("reopened_at", sa.DateTime()),
    sa.column("platform_result", sa.JSON()),
)
_DELIVERIES = sa.table(
    "webhook_deliveries", sa.column("id", sa.String()), sa.column("body", sa.Text()), sa.column("state", sa.String())
)


def _internal(result: dict[str, Any]) -> dict[str, Any]:
    """A review result as the platform gets it with every note internal: no flag notes, no comments."""
    flags = [{**flag, "note": None} for flag in result.get("flags", [])]
    return {**result, "flags": flags, "comments": []}


def upgrade() -> None:
    with op.batch_alter_table("flag_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note_shared", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("session_reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note_shared", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("second_note_shared", sa.Boolean(), server_default=sa.false(), nullable=False))

    connection = op.get_bind()
    kept = connection.execute(sa.select(_KEPT_RESULTS).where(_KEPT_RESULTS.c.reopened_at.is_not(None))).all()
    for row in kept:
        if not isinstance(row.platform_result, dict):  # none kept (SQL NULL or a JSON null)
            continue
        connection.execute(
            _KEPT_RESULTS.update()
            .where(_KEPT_RESULTS.c.session_id == row.session_id, _KEPT_RESULTS.c.version == row.version)
            .values(platform_result=_internal(row.platform_result))
        )
    owed = connection.execute(sa.select(_DELIVERIES).where(_DELIVERIES.c.state != "delivered")).all()
    for row in owed:
        body = json.loads(row.body)
        if isinstance(body.get("review"), dict):  # the review webhooks' body, `review_ui.decisions._notify`
            body["review"] = _internal(body["review"])
            connection.execute(
                _DELIVERIES.update().where(_DELIVERIES.c.id == row.id).values(body=json.dumps(body, sort_keys=True))
            )


def downgrade() -> None:
    with op.batch_alter_table("session_reviews", schema=None) as batch_op:
        batch_op.drop_column("second_note_shared")
        batch_op.drop_column("note_shared")
    with op.batch_alter_table("flag_decisions", schema=None) as batch_op:
        batch_op.drop_column("note_shared")
