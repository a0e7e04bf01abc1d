"""The app context: the settings, the metadata database and the object store of one process.

Built once per process by whoever owns the process (the `proctor` program's wiring, a test fixture) and
passed down; nothing here is global. Stages take what they need from it (a session factory, the store)
and their own typed configs, which `proctor.wiring` derives from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import check_schema, make_engine, make_sessionmaker, migrate, ping_database
from core.health import Dependency, DependencyChecks
from core.settings import Settings
from storage.object_store import ObjectStore, S3Location
from storage.public_endpoint import PublicEndpoint


@dataclass
class AppContext:
    settings: Settings
    location: S3Location
    engine: Engine
    db: sessionmaker[Session]
    store: ObjectStore
    readiness: DependencyChecks  # the database and the object store, each within PROCTOR_READY_CHECK_TIMEOUT_S

    def check_ready(self) -> None:
        """Raise `core.health.NotReady`, naming each dependency that did not answer in time."""
        self.readiness.check()

    def close(self) -> None:
        self.engine.dispose()


def build_context(settings: Settings, location: S3Location) -> AppContext:
    """Connect to the database (migrating it first, unless PROCTOR_MIGRATE_ON_START is false: then refuse an older
    schema) and to the object store (creating the bucket if needed)."""
    url = settings.resolved_database_url
    if settings.migrate_on_start:
        migrate(url)
    engine = make_engine(url)
    if not settings.migrate_on_start:
        check_schema(engine)
    db = make_sessionmaker(engine)
    store = ObjectStore(location, retries=settings.s3_retries, public=public_endpoint(settings))
    store.ensure_bucket()
    # The readiness probe's own store does not retry: a probe reports an outage at once, it does not ride it out.
    probe_store = ObjectStore(location, retries=0)
    readiness = DependencyChecks(
        [Dependency("database", partial(ping_database, db)), Dependency("object store", probe_store.ping)],
        settings.ready_check_timeout_s,
    )
    return AppContext(settings=settings, location=location, engine=engine, db=db, store=store, readiness=readiness)


def public_endpoint(settings: Settings) -> PublicEndpoint | None:
    """Where presigned URLs point clients, if not at the endpoint the services use."""
    if settings.s3_public_endpoint is None:
        return None
    secure = settings.s3_secure if settings.s3_public_secure is None else settings.s3_public_secure
    return PublicEndpoint(settings.s3_public_endpoint, secure)
