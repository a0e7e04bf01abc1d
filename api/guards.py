"""What every request and response of the app passes through, the review UI's included.

`RequestGuard` refuses, before routing, parsing or any authentication work, a body over its route's limit
(declared in Content-Length, or counted as a chunked body streams in) and a Range header no real file can
satisfy. `SecurityHeaders` adds the Content-Security-Policy, nosniff, Referrer-Policy and (over HTTPS) HSTS to
every response. Both are pure ASGI middleware: they never buffer a body, as `BaseHTTPMiddleware` would. What
they decide is in pure functions (`BodyLimits.limit_for`, `header_refusal`, `security_headers`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import BodyTooLarge, problem_response
from ingest.schemas import IngestError
from ingest.system_check import MAX_JPEG_BYTES
from review_ui.page_policy import PAGE_POLICY

log = logging.getLogger(__name__)

REVIEW_UI = "/review"  # the review UI's pages, forms and static files
_PART_PUT = re.compile(r"/v1/sessions/[^/]+/media/[^/]+/parts/[^/]+")
_SYSTEM_CHECK = re.compile(r"/(v1/sessions|openedx/recorder)/[^/]+/system-check")  # a camera frame (JPEG)
_HUGE_NUMBER = re.compile(rb"\d{19}")  # 10**18 bytes is an exabyte: no stored object comes near it

# FastAPI's Swagger UI and ReDoc pages start with an inline script and load their bundles from jsDelivr.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"


@dataclass(frozen=True)
class BodyLimit:
    """The most bytes a route takes, what it is called in a refusal, and what to send instead."""

    limit_bytes: int
    what: str
    advice: str

    def refusal(self, sent: str) -> IngestError:
        return IngestError(
            413,
            "body_too_large",
            f"{self.what} may be at most {self.limit_bytes} bytes; {sent}: {self.advice}",
            {"limit_bytes": self.limit_bytes},
        )


@dataclass(frozen=True)
class BodyLimits:
    """Request-body limits per route: `proctor.wiring` fills them from the settings."""

    json_bytes: int  # /v1's JSON bodies, and anything else the app is sent
    part_bytes: int  # one uploaded part: the largest part size a declared file can have
    form_bytes: int  # a review UI form, the login's included

    def __post_init__(self) -> None:
        for name in ("json_bytes", "part_bytes", "form_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 byte, got {getattr(self, name)}")

    def limit_for(self, method: str, path: str) -> BodyLimit:
        if path == REVIEW_UI or path.startswith(REVIEW_UI + "/"):
            return BodyLimit(self.form_bytes, "a review UI form", "shorten the text typed into the form")
        if method == "PUT" and _PART_PUT.fullmatch(path):
            return BodyLimit(
                self.part_bytes,
                "an uploaded part",
                "send parts of the media's part_size bytes (GET .../parts shows it), one per request",
            )
        if method == "POST" and _SYSTEM_CHECK.fullmatch(path):
            return BodyLimit(MAX_JPEG_BYTES, "a system check's camera frame", "send a JPEG of 1280x720 or less")
        return BodyLimit(
            self.json_bytes,
            "an API request body",
            "send the JSON documents the OpenAPI document describes; recordings go up in parts (PUT .../parts/{n})",
        )


def header_refusal(headers: Iterable[tuple[bytes, bytes]], limit: BodyLimit) -> IngestError | None:
    """The refusal a request earns by its headers alone, or None. Malformed Content-Length values never
    reach this: the HTTP server answers those 400 itself."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and (len(value) > 18 or int(value) > limit.limit_bytes):
            return limit.refusal(f"Content-Length declares {value.decode()} bytes")
        if name == b"range" and _HUGE_NUMBER.search(value):
            return IngestError(
                416,
                "range_not_satisfiable",
                "the Range header names an offset of 19 digits or more, beyond any stored file: ask for "
                "byte offsets within the file's size (e.g. 'bytes=0-1048575')",
            )
    return None


def security_headers(path: str, scheme: str, docs_paths: frozenset[str]) -> dict[str, str]:
    """The headers every response carries; HSTS only on a request that came over HTTPS (uvicorn has already
    applied X-Forwarded-Proto from a trusted proxy to the scheme)."""
    headers = {
        "Content-Security-Policy": DOCS_POLICY if path in docs_paths else PAGE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    if scheme == "https":
        headers["Strict-Transport-Security"] = HSTS
    return headers


class RequestGuard:
    """Refuses oversized bodies and impossible Range headers before the app reads a byte of the body."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        limit = self.limits.limit_for(method, path)
        refusal = header_refusal(scope["headers"], limit)
        if refusal is not None:
            log.info("request refused", extra={"code": refusal.code, "method": method, "path": path})
            await problem_response(refusal)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.limit_bytes:
                    log.info("request refused", extra={"code": "body_too_large", "method": method, "path": path})
                    raise BodyTooLarge(limit.refusal(f"this body went on past {limit.limit_bytes} bytes"))
            return message

        await self.app(scope, counted, send)


class SecurityHeaders:
    """Adds `security_headers` to every response that does not set its own."""

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str]) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"], scope["scheme"], self.docs_paths)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
