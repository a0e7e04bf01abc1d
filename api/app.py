"""The platform-facing HTTP API, `/v1`: what exam platforms integrate against (its OpenAPI document included).

Every error is an RFC 9457 problem document with a stable `code`. Routes are grouped per resource
(`api.sessions` for uploads, `api.review` for review results, `api.candidates` for enrolments and
erasing a candidate); this module assembles them into an app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from api import candidates, review, sessions
from api.state import PlatformApi
from ingest.schemas import IngestError
from ingest.uploads import Uploads
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)


def _problem_response(error: IngestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(
        error.problem().model_dump(exclude_none=True),
        status_code=error.status,
        media_type="application/problem+json",
        headers=headers,
    )


def create_api(
    db: sessionmaker[Session],
    store: ObjectStore,
    uploads: Uploads,
    *,
    presigned_url_ttl_s: int,
    check_ready: Callable[[], None],
) -> FastAPI:
    app = FastAPI(
        title="proctor-pipeline",
        version="1",
        summary="Upload recorded exam sessions for integrity review, and read the reviews' outcomes.",
    )
    app.state.platform = PlatformApi(db, store, uploads, presigned_url_ttl_s, check_ready)

    @app.exception_handler(IngestError)
    async def _ingest_error(_request: Request, error: IngestError) -> JSONResponse:
        return _problem_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in error.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'])}: {first['msg']}"
        return _problem_response(IngestError(422, "validation_error", message, {"errors": errors}))

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
