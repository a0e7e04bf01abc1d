"""The platform's side of the tests: a live `/v1` API, raw HTTP as one tenant, and request bodies."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from core.context import AppContext
from core.tenants import add_tenant, issue_api_key
from ingest.client import IngestClient
from ingest.uploads import Uploads

MIB = 1024 * 1024
STARTED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC).isoformat()


@dataclass
class Api:
    """A platform API served over real HTTP; `uploads` is the very service behind it."""

    url: str
    context: AppContext
    uploads: Uploads

    def tenant(self) -> tuple[str, str]:
        """A new tenant; returns (tenant id, API key)."""
        with self.context.db() as db:
            tenant = add_tenant(db, f"t-{uuid.uuid4().hex[:10]}", "test platform")
            key = issue_api_key(db, tenant)
            db.commit()
            return tenant.id, key

    def client(self, key: str, **kwargs: object) -> IngestClient:
        return IngestClient(self.url, key, **kwargs)  # type: ignore[arg-type]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def declare(kind: str, path: Path, content_type: str = "video/mp4", **over: Any) -> dict[str, Any]:
    return {"kind": kind, "size_bytes": path.stat().st_size, "sha256": sha(path), "content_type": content_type} | over


def session_body(*media: dict[str, Any], **over: Any) -> dict[str, Any]:
    body = {
        "exam_id": "exam-101",
        "candidate_id": "cand-7",
        "attempt_id": f"att-{uuid.uuid4().hex[:8]}",
        "started_at": STARTED,
        "media": list(media),
    }
    return body | over


@dataclass
class Caller:
    """Raw HTTP as one tenant, for asserting status codes and problem bodies."""

    http: httpx.Client

    def register(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.post("/v1/sessions", json=body, headers=headers)

    def put_part(self, sid: str, kind: str, n: int, data: bytes, **headers: str) -> httpx.Response:
        return self.http.put(f"/v1/sessions/{sid}/media/{kind}/parts/{n}", content=data, headers=headers)

    def complete(self, sid: str, kind: str) -> httpx.Response:
        return self.http.post(f"/v1/sessions/{sid}/media/{kind}/complete")

    def upload_whole(self, sid: str, kind: str, path: Path) -> httpx.Response:
        data = path.read_bytes()
        size = 5 * MIB
        for n, start in enumerate(range(0, len(data), size), start=1):
            assert self.put_part(sid, kind, n, data[start : start + size]).status_code == 200
        return self.complete(sid, kind)


def problem(response: httpx.Response) -> tuple[int, str]:
    if response.is_success:
        return response.status_code, "ok"
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["detail"], "every refusal says what is wrong"
    return response.status_code, body["code"]
