"""The platform-facing HTTP API, `/v1`: what exam platforms integrate against (its OpenAPI document included).

Every error is an RFC 9457 problem document with a stable `code`, the framework's own included (no such route,
method not allowed, an unhandled failure); `api.guards` refuses oversized bodies before any route runs and adds
the security headers to every response, the review UI's too when it is mounted on this app. Routes are grouped
per resource (`api.sessions` for uploads, `api.review` for review results, `api.candidates` for enrolments and
erasing a candidate); this module assembles them into an app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from api import candidates, review, sessions
from api.guards import BodyLimits, RequestGuard, SecurityHeaders, security_headers
from api.problems import http_refusal, internal_error, problem_response
from api.state import PlatformApi
from ingest.schemas import IngestError
from ingest.uploads import Uploads
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)


def create_api(
    db: sessionmaker[Session],
    store: ObjectStore,
    uploads: Uploads,
    *,
    presigned_url_ttl_s: int,
    check_ready: Callable[[], None],
    body_limits: BodyLimits,
) -> FastAPI:
    app = FastAPI(
        title="proctor-pipeline",
        version="1",
        summary="Upload recorded exam sessions for integrity review, and read the reviews' outcomes.",
    )
    app.state.platform = PlatformApi(db, store, uploads, presigned_url_ttl_s, check_ready)
    docs_paths = frozenset(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)
    # The last added runs first: the headers go on the guard's own refusals too.
    app.add_middleware(RequestGuard, limits=body_limits)
    app.add_middleware(SecurityHeaders, docs_paths=docs_paths)

    @app.exception_handler(IngestError)
    async def _ingest_error(_request: Request, error: IngestError) -> JSONResponse:
        return problem_response(error)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
        return problem_response(http_refusal(error, request.method, request.url.path), error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in error.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'])}: {first['msg']}"
        return problem_response(IngestError(422, "validation_error", message, {"errors": errors}))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, error: Exception) -> JSONResponse:
        # Starlette sends this from outside every middleware, so the security headers are added here too.
        log.error(
            "unhandled error",
            extra={"method": request.method, "path": request.url.path, "error": type(error).__name__},
        )
        headers = security_headers(request.url.path, request.url.scheme, docs_paths)
        return problem_response(internal_error(request.method, request.url.path), headers)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> dict[str, str]:
        check_ready()
        return {"status": "ready"}

    app.include_router(sessions.router)
    app.include_router(review.router)
    app.include_router(candidates.router)
    return app
