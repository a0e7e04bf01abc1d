"""The metadata database: the declarative base, the engine factory and the migration runner.

SQLite in the data directory is the embedded default; PostgreSQL is the production database. Both run the
same Alembic migrations (`core/migrations`). Times are stored as UTC and always come back timezone-aware.
The tables themselves are in `core.tables`.

Migrations run under a lock, so that processes starting together (API replicas, job workers, a deploy's migrate
step) never race on a fresh database: a PostgreSQL session-level advisory lock, or on SQLite a lock on a file
beside the database. The others wait, then find the schema current and change nothing. A process that does not
migrate at start (`PROCTOR_MIGRATE_ON_START=false`) checks the schema instead and refuses to start on an old one.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import JSON, DateTime, Dialect, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

# The PostgreSQL advisory lock that serialises migrations: the first 8 bytes of a hash of this name, so it
# cannot collide with `core.audit`'s lock (the bytes of "proctor").
MIGRATION_LOCK_KEY = int.from_bytes(hashlib.sha256(b"proctor-pipeline migrations").digest()[:8], "big", signed=True)


class SchemaNotCurrent(RuntimeError):
    """The database's schema is older than this release needs; the message says how to migrate it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC (SQLite has no time zones); hand back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"refusing a naive datetime {value!r}: pass a timezone-aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


def make_engine(url: str) -> Engine:
    """An engine with SQLite made safe for concurrent API workers (WAL, foreign keys, a busy timeout)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def ping_database(db: sessionmaker[Session]) -> None:
    """Raise unless the database answers a query."""
    with db() as session:
        session.execute(text("SELECT 1"))


def migrate(url: str) -> str:
    """Bring the database at `url` to the newest schema under the migration lock (creates SQLite's folder if
    needed); returns the revision it is at."""
    from alembic import command

    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    config = _alembic_config()
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with _file_lock(sqlite_file) if sqlite_file is not None else _advisory_lock(url):
        command.upgrade(config, "head")
    (head,) = _scripts().get_heads()
    log.info("database schema at head", extra={"revision": head})
    return head


def check_schema(engine: Engine) -> None:
    """Raise `SchemaNotCurrent` if the database is at an older revision than this release's, or has no schema.
    A revision this release does not know is a newer release's: it is let through (migrations add before they
    remove, so an older release runs on a newer schema through a rolling update)."""
    from alembic.migration import MigrationContext

    scripts = _scripts()
    heads = set(scripts.get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return
    if current and not current <= {script.revision for script in scripts.walk_revisions()}:
        log.warning("database schema is newer than this release", extra={"at": sorted(current), "heads": sorted(heads)})
        return
    raise SchemaNotCurrent(
        f"the database schema is at {', '.join(sorted(current)) or 'no revision (an empty database)'}, and this "
        f"release needs {', '.join(sorted(heads))}: run `proctor migrate` first, or set PROCTOR_MIGRATE_ON_START=true "
        "to have every process migrate as it starts"
    )


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for any other database."""
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


@contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    """Hold PostgreSQL's migration lock for the block, waiting while another process migrates."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}):
                log.info("waiting for another process's migration", extra={"lock": MIGRATION_LOCK_KEY})
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()


@contextmanager
def _file_lock(database: Path) -> Iterator[None]:
    """An exclusive `flock` on `<database file>.migrate-lock` (POSIX, as the embedded S3 server is)."""
    import fcntl

    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
