"""Shared fixtures: a real embedded S3 server for the whole run, SQLite / PostgreSQL databases, the app
context on them, a live platform API, and small real recordings.

PostgreSQL tests run against PROCTOR_TEST_POSTGRES_URL (default: the local server at 127.0.0.1:5432,
database `test`) in a scratch database created for the run, and are skipped with the reason when the
server cannot be reached.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.context import AppContext, build_context
from core.db import migrate
from core.settings import Settings
from ingest.uploads import Uploads
from proctor.local_server import BackgroundServer
from proctor.samples import write_filler_video
from proctor.wiring import platform_app
from proctor.wiring import uploads as build_uploads
from review_ui import accounts, sign_in
from storage.embedded_s3 import EmbeddedS3
from storage.object_store import S3Location
from tests.support import media as mf
from tests.support.platform import MIB, Api

POSTGRES_ADMIN_URL = os.environ.get("PROCTOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """CLI commands run in-process (typer's CliRunner) configure the root logger with a handler on the
    runner's stderr, which is closed when the command returns. Put the root logger back after each test, so
    a later test's logs (a background server's, say) do not land in a closed stream ("--- Logging error ---")
    or in another command's captured output."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


FAST_PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at the shipped profile (64 MiB, 3 passes) costs about 0.14 s a hash and as much a sign-in, and
    the suite makes thousands: tests hash with 1 MiB and one pass, as Django's test settings swap in a fast
    hasher. Hashes carry their parameters, so either kind verifies. tests/review_ui/test_login_limits.py checks
    the shipped profile; a command run as a subprocess keeps it."""
    monkeypatch.setattr(accounts, "password_hasher", lambda: FAST_PASSWORD_HASHER)
    monkeypatch.setattr(sign_in, "password_hasher", lambda: FAST_PASSWORD_HASHER)


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


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the newest schema, migrated once per worker. Each test gets its own copy: running every
    migration on every test's fresh file cost about a second a test. The migrations themselves are tested from an
    empty database in tests/core/test_migrations.py and test_migrate_command.py."""
    path = tmp_path_factory.mktemp("schema") / "proctor.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        database = tmp_path / "proctor.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), database)
        return f"sqlite:///{database}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        part_size_bytes=5 * MIB,
        presigned_url_ttl_s=60,
        _env_file=None,
    )  # type: ignore[call-arg]


@pytest.fixture
def context(settings: Settings, s3: S3Location) -> Iterator[AppContext]:
    ctx = build_context(settings, s3)
    yield ctx
    ctx.close()


@pytest.fixture
def uploads(context: AppContext) -> Uploads:
    """The upload service, as `proctor serve` builds it from the settings."""
    return build_uploads(context)


@pytest.fixture
def api(context: AppContext, uploads: Uploads) -> Iterator[Api]:
    """The platform API over real HTTP, backed by `uploads`."""
    with BackgroundServer(platform_app(context, uploads)) as url:
        yield Api(url, context, uploads)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def small_video(media_dir: Path) -> Path:
    return mf.h264_mp4(media_dir)


@pytest.fixture(scope="module")
def multipart_video(media_dir: Path) -> Path:
    """A valid recording of about 12 MiB: three 5 MiB parts."""
    return write_filler_video(media_dir / "twelve.mp4", 12 * MIB)
