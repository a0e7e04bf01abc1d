"""Shared fixtures: a real embedded S3 server for the whole run, and SQLite / PostgreSQL databases.

PostgreSQL tests run against PROCTOR_TEST_POSTGRES_URL (default: the local server at 127.0.0.1:5432,
database `test`) in a scratch database created for the run, and are skipped with the reason when the
server cannot be reached.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ingest.embedded_s3 import EmbeddedS3
from ingest.object_store import S3Location

POSTGRES_ADMIN_URL = os.environ.get("PROCTOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Location]:
    """One real SeaweedFS S3 server for the test run (never a mock)."""
    with EmbeddedS3(tmp_path_factory.mktemp("embedded-s3"), bucket="proctor-test") as location:
        yield location


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A scratch PostgreSQL database for this run, dropped afterwards."""
    try:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        pytest.skip(
            f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__}); set "
            "PROCTOR_TEST_POSTGRES_URL to run the PostgreSQL variants"
        )
    name = f"proctor_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'proctor.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
