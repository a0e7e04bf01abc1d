"""The request guard's decisions, as pure functions: which limit a route gets, what headers alone refuse, and
which security headers a response carries."""

from __future__ import annotations

import pytest

from api.guards import DOCS_POLICY, PAGE_POLICY, BodyLimits, header_refusal, security_headers

LIMITS = BodyLimits(json_bytes=1000, part_bytes=5000, form_bytes=100)


@pytest.mark.parametrize(
    ("method", "path", "limit"),
    [
        ("POST", "/v1/sessions", 1000),
        ("POST", "/v1/sessions/s1/media/webcam/parts/presign", 1000),
        ("PUT", "/v1/sessions/s1/media/webcam/parts/3", 5000),
        ("PUT", "/v1/sessions/s1/media/events/parts/1", 5000),
        ("POST", "/v1/sessions/s1/media/webcam/parts/3", 1000),  # only the PUT is an upload
        ("PUT", "/v1/sessions/s1/media/webcam/parts/3/extra", 1000),
        ("POST", "/review/login", 100),
        ("POST", "/review/sessions/s1/claim", 100),
        ("GET", "/review", 100),
        ("POST", "/reviewer", 1000),
        ("GET", "/healthz", 1000),
    ],
)
def test_each_route_gets_its_limit(method: str, path: str, limit: int) -> None:
    assert LIMITS.limit_for(method, path).limit_bytes == limit


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ([(b"content-length", b"1000")], None),
        ([(b"content-length", b"1001")], (413, "body_too_large")),
        ([(b"content-length", b"9" * 40)], (413, "body_too_large")),
        ([(b"transfer-encoding", b"chunked")], None),  # counted as it streams, by the middleware
        ([(b"range", b"bytes=0-1023")], None),
        ([(b"range", b"bytes=" + b"9" * 18 + b"-")], None),
        ([(b"range", b"bytes=" + b"9" * 19 + b"-")], (416, "range_not_satisfiable")),
        ([(b"range", b"bytes=-" + b"9" * 5000)], (416, "range_not_satisfiable")),
    ],
)
def test_headers_alone_refuse_what_no_route_could_take(
    headers: list[tuple[bytes, bytes]], refused: tuple[int, str] | None
) -> None:
    refusal = header_refusal(headers, LIMITS.limit_for("POST", "/v1/sessions"))
    assert ((refusal.status, refusal.code) if refusal else None) == refused


def test_a_limit_of_zero_is_refused_on_construction() -> None:
    with pytest.raises(ValueError, match="form_bytes must be at least 1 byte, got 0"):
        BodyLimits(json_bytes=1, part_bytes=1, form_bytes=0)


@pytest.mark.parametrize(
    ("path", "scheme", "policy", "hsts"),
    [
        ("/review/queue", "http", PAGE_POLICY, False),
        ("/review/queue", "https", PAGE_POLICY, True),
        ("/v1/sessions", "https", PAGE_POLICY, True),
        ("/docs", "http", DOCS_POLICY, False),
    ],
)
def test_security_headers(path: str, scheme: str, policy: str, hsts: bool) -> None:
    headers = security_headers(path, scheme, frozenset({"/docs"}))
    assert headers["Content-Security-Policy"] == policy
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "same-origin"
    assert ("Strict-Transport-Security" in headers) is hsts
