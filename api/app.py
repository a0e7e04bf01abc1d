"""The platform-facing HTTP API, `/v1`: what exam platforms integrate against (its OpenAPI document included).

Every error is an RFC 9457 problem document with a stable `code`, the framework's own included (no such route,
method not allowed, an unhandled failure); `api.guards` refuses oversized bodies before any route runs and adds
the security headers to every response, the review UI's too when it is mounted on this app. Routes are grouped
per resource (`api.sessions` for uploads, `api.review` for review results, `api.candidates` for enrolments and
erasing a candidate, `api.exams` for an exam's flagging policy); this module assembles them into an app, whose
OpenAPI document `api.openapi` finishes.

The operations endpoints never wait on the thread pool that serves requests (40 threads, which a burst of
requests can hold): `/healthz` (liveness: the process answers) is async and touches no thread; `/readyz` checks
the database and the object store, each within a timeout, and `/metrics` (the Prometheus text format, from the
app's own registry) reads the queue's depth, each on a small thread allowance of its own. The blocking work of
part uploads and `complete` runs on allowances of its own too (`api.upload_capacity`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from api import candidates, exams, review, sessions, system_check
from api.auth import PROBLEM, presented_credential
from api.guards import BodyLimits, RequestGuard, SecurityHeaders, security_headers
from api.metrics import CountResponses, api_metrics
from api.openapi import PlatformApp
from api.problems import allowed_methods, http_refusal, internal_error, problem_response
from api.state import PlatformApi
from api.upload_capacity import PartUploadLimits, UploadCapacity
from core.health import NotReady
from ingest.enrolment import EnrolmentChecks
from ingest.schemas import IngestError
from ingest.uploads import Uploads
from review_ui.refusal_audit import install_refusal_audit, note_refusal
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)

OPS_THREADS = 2  # threads /readyz, and separately /metrics, may use at once: outside the requests' pool


def create_api(
    db: sessionmaker[Session],
    store: ObjectStore,
    uploads: Uploads,
    *,
    presigned_url_ttl_s: int,
    check_ready: Callable[[], None],
    body_limits: BodyLimits,
    part_uploads: PartUploadLimits = PartUploadLimits(),
    enrolment_checks: EnrolmentChecks | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """`check_ready` raises `core.health.NotReady` naming what is not ready (any other error is a 500);
    `enrolment_checks` judges the candidates' system-check frames (without it that route answers 503);
    `cors_origins` are the pages that may call the API from a browser (an embedded recorder): none, no CORS headers;
    `part_uploads` bounds the memory and threads of part uploads and `complete`."""
    part_uploads.check_holds(body_limits.part_bytes)
    app = PlatformApp(
        title="proctor-pipeline",
        version="1",
        summary="Upload recorded exam sessions for integrity review, and read the reviews' outcomes.",
    )
    app.state.platform = PlatformApi(db, store, uploads, presigned_url_ttl_s, check_ready, enrolment_checks)
    metrics = app.state.metrics = api_metrics(db)
    ready_threads, metrics_threads = CapacityLimiter(OPS_THREADS), CapacityLimiter(OPS_THREADS)
    app.state.upload_capacity = UploadCapacity(part_uploads)  # the part and complete routes' own allowances
    install_refusal_audit(app, db)  # 401 and 403 are audited by the handlers below
    docs_paths = frozenset(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)
    # The last added runs first: the headers go on the guard's own refusals too.
    app.add_middleware(RequestGuard, limits=body_limits)
    app.add_middleware(SecurityHeaders, docs_paths=docs_paths)
    app.add_middleware(CountResponses, metrics=metrics)  # it sees the guard's refusals too
    if cors_origins:  # outermost: preflights are answered, and every refusal is readable by the page
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "PUT", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Part-SHA256"],
            expose_headers=["ETag"],
        )

    async def audited(request: Request, error: IngestError) -> IngestError:
        """Who was refused access (401, 403) goes to the audit trail (`review_ui.refusal_audit`)."""
        if error.status in (401, 403):
            await note_refusal(request, error.status, error.code, credential=presented_credential(request))
        return error

    @app.exception_handler(IngestError)
    async def _ingest_error(request: Request, error: IngestError) -> JSONResponse:
        return problem_response(await audited(request, error))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 405:  # the framework's `Allow` names the methods of one route, not of the path
            error.headers = {**(error.headers or {}), "Allow": allowed_methods(app.routes, request.scope)}
        refusal = await audited(request, http_refusal(error, request.method, request.url.path))
        return problem_response(refusal, error.headers)

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
        metrics.problem("internal_error")  # sent from outside the middleware that counts the others
        return problem_response(internal_error(request.method, request.url.path), headers)

    @app.get("/healthz", tags=["ops"], operation_id="healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers. Checks nothing else, so a slow dependency never gets it restarted."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        operation_id="readyz",
        responses={503: {**PROBLEM, "description": "`not_ready`: `details.failing` says what"}},
    )
    async def readyz() -> Response:
        """Readiness: the database and the object store each answered within the timeout."""
        try:
            await to_thread.run_sync(check_ready, limiter=ready_threads)
        except NotReady as not_ready:
            failing = [{"dependency": f.dependency, "reason": f.reason} for f in not_ready.failures]
            return problem_response(
                IngestError(
                    503,
                    "not_ready",
                    f"not ready: {not_ready}; retry later (the server's log holds the cause)",
                    {"failing": failing},
                )
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["ops"], operation_id="metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """The Prometheus text format: upload bytes, problem documents per code, and the job queue's depth."""
        page = await to_thread.run_sync(generate_latest, metrics.registry, limiter=metrics_threads)
        return Response(page, media_type=CONTENT_TYPE_LATEST)

    app.include_router(sessions.router)
    app.include_router(review.router)
    app.include_router(candidates.router)
    app.include_router(exams.router)
    app.include_router(system_check.router)
    return app
