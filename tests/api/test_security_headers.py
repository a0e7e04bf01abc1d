"""Security headers on every response of the served app: API answers, review UI pages and static files, the
guard's own refusals, routing errors and an unhandled failure. HSTS only when the request came over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from api.app import create_api
from api.guards import DOCS_POLICY, PAGE_POLICY
from core.context import AppContext
from proctor.local_server import BackgroundServer
from proctor.wiring import body_limits, server_app
from proctor.wiring import uploads as build_uploads
from tests.support.platform import problem
from tests.support.raw_http import declared_body

REQUESTS = [
    ("api answer", "GET", "/healthz", {}, 200),
    ("api problem", "GET", "/v1/sessions/nope", {}, 401),
    ("unrouted", "GET", "/no-such-path", {}, 404),
    ("body refused before routing", "POST", "/v1/sessions", {"Content-Length": str(10**9)}, 413),
    ("review page", "GET", "/review/login", {}, 200),
    ("review static file", "GET", "/review/static/review.js", {}, 200),
    ("review redirect", "GET", "/review/queue", {}, 303),
    ("openapi document", "GET", "/openapi.json", {}, 200),
]


@pytest.fixture
def served(context: AppContext) -> Iterator[str]:
    with BackgroundServer(server_app(context)) as url:
        yield url


def send(url: str, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    if "Content-Length" in headers:  # declared, not sent: the guard answers from the headers alone
        return declared_body(url, method, path, int(headers["Content-Length"]))
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.request(method, path, headers=headers)


@pytest.mark.parametrize(("name", "method", "path", "headers", "status"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_every_response_carries_the_security_headers(
    served: str, name: str, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = send(served, method, path, headers)
    assert response.status_code == status, response.text
    assert response.headers["Content-Security-Policy"] == PAGE_POLICY
    assert "frame-ancestors 'none'" in PAGE_POLICY and "script-src" not in PAGE_POLICY  # scripts: 'self' only
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers, "HSTS only over HTTPS"


def test_hsts_over_https_from_the_trusted_proxy(served: str) -> None:
    """uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (its default forwarded_allow_ips), as behind a proxy."""
    response = send(served, "GET", "/review/login", {"X-Forwarded-Proto": "https"})
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_the_api_docs_page_gets_the_policy_its_scripts_need(served: str) -> None:
    response = send(served, "GET", "/docs", {})
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == DOCS_POLICY
    assert "frame-ancestors 'none'" in DOCS_POLICY


def test_an_unhandled_failure_is_a_problem_document_with_the_headers(context: AppContext) -> None:
    def broken() -> None:
        raise RuntimeError("the readiness check itself failed")

    app = create_api(
        context.db, context.store, build_uploads(context), presigned_url_ttl_s=60, check_ready=broken,
        body_limits=body_limits(context.settings),
    )  # fmt: skip
    with BackgroundServer(app) as url:
        response = send(url, "GET", "/readyz", {})
    assert problem(response) == (500, "internal_error")
    assert "/readyz" in response.json()["detail"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == PAGE_POLICY
