"""Migrations: they upgrade a database that holds data, and the models never drift from them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text

import core.db
import core.tables  # registers every table on Base.metadata
from core.db import Base, migrate


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(core.db.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    return config


def test_models_match_the_migrated_schema(database_url: str) -> None:
    migrate(database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], "a model changed without a migration: run alembic revision --autogenerate"


def seed_an_old_session(conn: Connection, state: str, *, with_chunks_done: bool) -> None:
    """One tenant, exam and session as a database of that revision holds them."""
    conn.execute(text("INSERT INTO tenants (id, slug, name, created_at) VALUES ('t', 't', 't', '2026-01-01')"))
    conn.execute(
        text(
            "INSERT INTO exams (id, tenant_id, external_id, title, policy, created_at) "
            "VALUES ('e', 't', 'e', '', '{}', '2026-01-01')"
        )
    )
    chunks_column, chunks_value = (", chunks_done", ", 0") if with_chunks_done else ("", "")
    conn.execute(
        text(
            "INSERT INTO sessions (id, tenant_id, exam_id, candidate_id, attempt_id, started_at, state, "
            f"created_at, updated_at{chunks_column}) VALUES ('s', 't', 'e', 'c', 'a', '2026-01-01', :state, "
            f"'2026-01-01', '2026-01-01'{chunks_value})"
        ),
        {"state": state},
    )


def test_upgrading_keeps_existing_sessions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        seed_an_old_session(conn, "queued", with_chunks_done=False)
    migrate(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT chunks_done, risk_score FROM sessions")).one() == (0, None)
        assert "segments" in inspect(conn).get_table_names()
    engine.dispose()


def test_the_enrolment_migration_keeps_existing_media(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0004")
    engine = create_engine(url)
    with engine.begin() as conn:
        seed_an_old_session(conn, "rejected", with_chunks_done=True)
        conn.execute(
            text(
                "INSERT INTO media (id, session_id, kind, object_key, content_type, declared_size, declared_sha256, "
                "part_size, state) VALUES ('m', 's', 'webcam', 't/e/s/media/webcam', 'video/mp4', 1, 'x', 1, "
                "'rejected')"
            )
        )
    migrate(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT kind, state, reason_code FROM media")).one() == ("webcam", "rejected", None)
        assert conn.execute(text("SELECT count(*) FROM candidate_enrolments")).scalar() == 0
    command.downgrade(config, "0004")  # and back
    with engine.connect() as conn:
        assert "candidate_enrolments" not in inspect(conn).get_table_names()
    engine.dispose()
