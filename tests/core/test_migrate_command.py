"""`proctor migrate` as one locked step: processes that start together on a fresh database take turns and all
succeed; and a process told not to migrate at start refuses an older schema with what to run instead."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.context import build_context
from core.db import SchemaNotCurrent, check_schema, make_engine, migrate
from core.settings import Settings
from storage.object_store import S3Location
from tests.conftest import POSTGRES_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4


def revision_of(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import core.db

    config = Config()
    config.set_main_option("script_location", str(Path(core.db.__file__).parent / "migrations"))
    (only,) = ScriptDirectory.from_config(config).get_heads()
    return only


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """An empty PostgreSQL database of its own (the run's shared one is migrated already)."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"proctor_migrate_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate_at_once(url: str) -> None:
    """Run `proctor migrate` in PROCESSES processes at the same moment; all must succeed, the schema at head."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCTOR_")}
    env |= {"PROCTOR_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    # Each process imports everything, says so, and waits on its stdin: then all of them migrate at once.
    go = "from proctor.cli import app; print('imported', flush=True); input(); app(['migrate'])"
    migrating = [
        subprocess.Popen(
            [sys.executable, "-c", go], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(PROCESSES)
    ]
    for process in migrating:
        assert process.stdout is not None and process.stdout.readline() == b"imported\n"
    for process in migrating:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
    outputs = []
    for process in migrating:
        assert process.stdout is not None
        outputs.append(process.stdout.read().decode())
        process.wait(240)
    assert [process.returncode for process in migrating] == [0] * PROCESSES, "\n---\n".join(outputs)
    assert all(f"database schema at revision {head()}" in output for output in outputs)
    assert revision_of(url) == {head()}


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_processes_migrating_a_fresh_postgresql_database_at_once_all_succeed(fresh_postgres: str) -> None:
    """Several API replicas and workers starting on a new deployment: they take turns on the advisory lock."""
    migrate_at_once(fresh_postgres)


@pytest.mark.timeout(300)
def test_processes_migrating_a_fresh_sqlite_database_at_once_all_succeed(tmp_path: Path) -> None:
    """`proctor serve` and `proctor worker` started together on the embedded default: a lock on a file."""
    migrate_at_once(f"sqlite:///{tmp_path / 'fresh' / 'proctor.db'}")


def test_a_process_that_does_not_migrate_refuses_an_older_schema(s3: S3Location, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'empty.db'}"
    told_not_to = Settings(data_dir=tmp_path, database_url=fresh, migrate_on_start=False, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(SchemaNotCurrent, match=r"no revision .* run `proctor migrate` first"):
        build_context(told_not_to, s3)
    assert revision_of(fresh) == set(), "it changed nothing"

    migrate(fresh)
    context = build_context(told_not_to, s3)  # now current: it starts
    context.close()


def test_an_older_revision_is_refused_and_a_newer_one_let_through(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'proctor.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        with pytest.raises(SchemaNotCurrent, match=f"at 0001, and this release needs {head()}"):
            check_schema(engine)
        with engine.begin() as connection:  # a later release migrated it: this one runs through the rollout
            connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        check_schema(engine)
    finally:
        engine.dispose()
