"""CORS for platforms that embed the recorder on their own origin: only the configured origins, only when set."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from core.context import build_context
from core.settings import Settings
from proctor.local_server import BackgroundServer
from proctor.wiring import platform_app
from storage.object_store import S3Location

LMS = "https://lms.example.org"
PREFLIGHT = {
    "Origin": LMS,
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "authorization, content-type, x-part-sha256",
}


def served(settings: Settings, s3: S3Location) -> Iterator[str]:
    context = build_context(settings, s3)
    try:
        with BackgroundServer(platform_app(context)) as url:
            yield url
    finally:
        context.close()


@pytest.fixture
def cors_url(settings: Settings, s3: S3Location) -> Iterator[str]:
    yield from served(settings.model_copy(update={"cors_origins": [LMS]}), s3)


@pytest.fixture
def plain_url(settings: Settings, s3: S3Location) -> Iterator[str]:
    yield from served(settings, s3)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_configured_origin_may_upload_from_the_browser(cors_url: str) -> None:
    preflight = httpx.options(f"{cors_url}/v1/sessions/s/media/webcam/parts/1", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == LMS
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    assert "x-part-sha256" in preflight.headers["access-control-allow-headers"].lower()
    refused = httpx.get(f"{cors_url}/v1/sessions/s", headers={"Origin": LMS})
    assert refused.status_code == 401, "the page can read the refusal"
    assert refused.headers["access-control-allow-origin"] == LMS
    assert "etag" in refused.headers["access-control-expose-headers"].lower()
    stranger = httpx.get(f"{cors_url}/v1/sessions/s", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_origin_no_cors_headers(plain_url: str) -> None:
    answer = httpx.get(f"{plain_url}/v1/sessions/s", headers={"Origin": LMS})
    assert "access-control-allow-origin" not in answer.headers


def test_the_origins_setting_reads_a_list_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCTOR_CORS_ORIGINS", f"{LMS}, https://other.example")
    assert Settings(_env_file=None).cors_origins == [LMS, "https://other.example"]  # type: ignore[call-arg]
    monkeypatch.setenv("PROCTOR_CORS_ORIGINS", f'["{LMS}"]')
    assert Settings(_env_file=None).cors_origins == [LMS]  # type: ignore[call-arg]
    monkeypatch.delenv("PROCTOR_CORS_ORIGINS")
    assert Settings(_env_file=None).cors_origins == []  # type: ignore[call-arg]
