"""The platform API's metrics: bytes uploaded through it, and every problem document it answers, per code.

`CountResponses` is pure ASGI middleware that sits outside all others, so it sees the refusals the request
guard sends before any route runs as well as the routes' own; it reads only a problem document's body (a few
hundred bytes), never buffers an upload, and passes every message on as it comes. Unhandled failures are sent
from outside every middleware, so the app's handler counts those itself (`ApiMetrics.problem`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import registry_with_queue_depth
from core.vocabulary import MediaKind

_PART_PUT = re.compile(r"/v1/sessions/[^/]+/media/([^/]+)/parts/\d+")
_KINDS = frozenset(kind.value for kind in MediaKind)


@dataclass(frozen=True)
class ApiMetrics:
    registry: CollectorRegistry
    upload_bytes: Counter
    problems: Counter

    def problem(self, code: str) -> None:
        self.problems.labels(code=code).inc()


def api_metrics(db: sessionmaker[Session]) -> ApiMetrics:
    """A registry of its own for one app (see `core.metrics`), with the queue's depth in it."""
    registry = registry_with_queue_depth(db)
    upload_bytes = Counter(
        "proctor_api_upload_bytes",
        "Bytes of media parts stored through the API, per media kind (presigned uploads go straight to S3)",
        ["kind"],
        registry=registry,
    )
    problems = Counter(
        "proctor_api_problems",
        "Problem documents answered, per code: refusals (4xx), storage_unavailable and internal_error",
        ["code"],
        registry=registry,
    )
    return ApiMetrics(registry, upload_bytes, problems)


def uploaded_kind(method: str, path: str) -> str | None:
    """The media kind a request uploads a part of, or None for any other request."""
    match = _PART_PUT.fullmatch(path) if method == "PUT" else None
    return match[1] if match is not None and match[1] in _KINDS else None


def problem_code(body: bytes) -> str:
    """The `code` of a problem document (`unknown` if the body is not one)."""
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return "unknown"
    return code if isinstance(code, str) and code else "unknown"


class CountResponses:
    """Counts upload bytes and problem documents (see the module's docstring)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = uploaded_kind(scope["method"], scope["path"])
        received, status, problem = 0, 0, None  # problem: the body so far, while the response is a problem

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def watched(message: Message) -> None:
            nonlocal status, problem
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                problem = bytearray() if content_type.startswith(b"application/problem+json") else None
            elif message["type"] == "http.response.body" and problem is not None:
                problem += message.get("body", b"")
                if not message.get("more_body", False):
                    self.metrics.problem(problem_code(bytes(problem)))
                    problem = None
            await send(message)

        await self.app(scope, counted if kind else receive, watched)
        if kind and 200 <= status < 300:
            self.metrics.upload_bytes.labels(kind=kind).inc(received)
