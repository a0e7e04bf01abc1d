"""An ingest API served over real HTTP, backed by the real embedded S3 server and a SQLite or PostgreSQL db."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.api import create_app
from ingest.client import IngestClient
from ingest.context import IngestContext, build_context
from ingest.object_store import S3Location
from ingest.settings import Settings
from ingest.tenants import add_tenant, issue_api_key
from pipelines.local_server import BackgroundServer

MIB = 1024 * 1024


@dataclass
class Api:
    url: str
    context: IngestContext

    def tenant(self) -> tuple[str, str]:
        """A new tenant; returns (tenant id, API key)."""
        with self.context.db() as db:
            tenant = add_tenant(db, f"t-{uuid.uuid4().hex[:10]}", "test platform")
            key = issue_api_key(db, tenant)
            db.commit()
            return tenant.id, key

    def client(self, key: str, **kwargs: object) -> IngestClient:
        return IngestClient(self.url, key, **kwargs)  # type: ignore[arg-type]


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
def context(settings: Settings, s3: S3Location) -> Iterator[IngestContext]:
    ctx = build_context(settings, s3)
    yield ctx
    ctx.close()


@pytest.fixture
def api(context: IngestContext) -> Iterator[Api]:
    with BackgroundServer(create_app(context)) as url:
        yield Api(url, context)
