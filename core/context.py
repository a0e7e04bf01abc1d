"""The app context: the settings, the metadata database and the object store of one process.

Built once per process by whoever owns the process (the `proctor` program's wiring, a test fixture) and
passed down; nothing here is global. Stages take what they need from it (a session factory, the store)
and their own typed configs, which `proctor.wiring` derives from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker, migrate
from core.settings import Settings
from storage.object_store import ObjectStore, S3Location


@dataclass
class AppContext:
    settings: Settings
    location: S3Location
    engine: Engine
    db: sessionmaker[Session]
    store: ObjectStore

    def check_ready(self) -> None:
        with self.db() as db:
            db.execute(text("SELECT 1"))
        self.store.ping()

    def close(self) -> None:
        self.engine.dispose()


def build_context(settings: Settings, location: S3Location, *, run_migrations: bool = True) -> AppContext:
    url = settings.resolved_database_url
    if run_migrations:
        migrate(url)
    engine = make_engine(url)
    db = make_sessionmaker(engine)
    store = ObjectStore(location, retries=settings.s3_retries)
    store.ensure_bucket()
    return AppContext(settings=settings, location=location, engine=engine, db=db, store=store)
