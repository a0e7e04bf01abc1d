"""Migration 0010: an outcome made final before versions existed becomes its session's version 1."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from core.db import migrate
from tests.core.test_migrations import alembic_config, seed_an_old_session


def test_final_outcomes_become_version_one_and_open_ones_stay_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0009")
    engine = create_engine(url)
    with engine.begin() as conn:
        seed_an_old_session(conn, "reviewed", with_chunks_done=True)
        conn.execute(
            text(
                "INSERT INTO sessions (id, tenant_id, exam_id, candidate_id, attempt_id, started_at, state, "
                "created_at, updated_at, chunks_done) VALUES ('s2', 't', 'e', 'c2', 'a2', '2026-01-01', "
                "'in_review', '2026-01-01', '2026-01-01', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO users (id, username, password_hash, role, failed_logins, created_at) VALUES "
                "('u1', 'first', 'x', 'reviewer', 0, '2026-01-01'), ('u2', 'second', 'x', 'reviewer', 0, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO session_reviews (session_id, outcome, note, status, reviewer_id, decided_at, "
                "second_reviewer_id, finalised_at) VALUES "
                "('s', 'Rules Violation', 'phone', 'final', 'u1', '2026-02-01 10:00:00', 'u2', '2026-02-02 09:00:00'), "
                "('s2', 'Rules Violation', 'notes', 'awaiting_second', 'u1', '2026-02-01 10:00:00', NULL, NULL)"
            )
        )
    migrate(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT session_id, version, outcome, decided_by, second_by, decided_at, reopened_at "
                "FROM review_outcomes"
            )
        ).all()
    # finalised_at (when it became final), not decided_at (when the first reviewer chose it)
    assert [tuple(r) for r in rows] == [("s", 1, "Rules Violation", "u1", "u2", "2026-02-02 09:00:00", None)]
    command.downgrade(config, "0009")  # and back
    with engine.connect() as conn:
        assert "review_outcomes" not in inspect(conn).get_table_names()
    engine.dispose()
