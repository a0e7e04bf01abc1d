"""Wiring: from `Settings` and a reachable S3 location to the database, the store and the upload service.

Built once per process by whoever owns the process (the API server, the CLI, a test fixture) and passed
down; nothing here is global.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ingest.db import make_engine, make_sessionmaker, migrate
from ingest.object_store import ObjectStore, S3Location
from ingest.probe import ProbeLimits
from ingest.settings import Settings
from ingest.uploads import UploadLimits, Uploads


@dataclass
class IngestContext:
    settings: Settings
    location: S3Location
    engine: Engine
    db: sessionmaker[Session]
    store: ObjectStore
    uploads: Uploads

    def check_ready(self) -> None:
        with self.db() as db:
            db.execute(text("SELECT 1"))
        self.store.ping()

    def close(self) -> None:
        self.engine.dispose()


def upload_limits(settings: Settings) -> UploadLimits:
    return UploadLimits(
        part_size_bytes=settings.part_size_bytes,
        max_media_bytes=settings.max_media_bytes,
        max_event_log_bytes=settings.max_event_log_bytes,
        presigned_url_ttl_s=settings.presigned_url_ttl_s,
        probe=ProbeLimits(
            min_side_px=settings.min_video_side_px,
            max_side_px=settings.max_video_side_px,
            max_duration_s=settings.max_recording_s,
        ),
    )


def build_context(settings: Settings, location: S3Location, *, run_migrations: bool = True) -> IngestContext:
    url = settings.resolved_database_url
    if run_migrations:
        migrate(url)
    engine = make_engine(url)
    db = make_sessionmaker(engine)
    store = ObjectStore(location, retries=settings.s3_retries)
    store.ensure_bucket()
    uploads = Uploads(db, store, upload_limits(settings), job_max_attempts=settings.job_max_attempts)
    return IngestContext(settings=settings, location=location, engine=engine, db=db, store=store, uploads=uploads)
