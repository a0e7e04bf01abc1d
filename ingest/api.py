"""The `/v1` ingest API: a thin FastAPI layer over `ingest.uploads.Uploads`.

Every error is an RFC 9457 problem document with a stable `code`. Part bodies are streamed and size-checked
as they arrive; at most one part per request is held in memory, never the upload.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ingest.context import IngestContext
from ingest.schemas import (
    IngestError,
    MediaKind,
    PartOut,
    PartsOut,
    PresignOut,
    PresignRequest,
    Problem,
    SessionCreate,
    SessionOut,
)
from ingest.tenants import tenant_for_key
from ingest.uploads import Uploads

log = logging.getLogger(__name__)

PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, object]] = {
    code: {**PROBLEM, "description": text}
    for code, text in {
        401: "missing or invalid API key",
        404: "no such session for this tenant",
        409: "conflict: see `code`",
        413: "too large",
        422: "rejected input: see `code`",
    }.items()
}


def _context(request: Request) -> IngestContext:
    context: IngestContext = request.app.state.ingest
    return context


def _uploads(request: Request) -> Uploads:
    return _context(request).uploads


def _tenant_id(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise IngestError(401, "unauthorized", "send the tenant's API key as 'Authorization: Bearer pp_...'")
    with _context(request).db() as db:
        tenant = tenant_for_key(db, token.strip())
        if tenant is None:
            raise IngestError(401, "unauthorized", "this API key is unknown or revoked")
        return tenant.id


TenantId = Annotated[str, Depends(_tenant_id)]
UploadsDep = Annotated[Uploads, Depends(_uploads)]

router = APIRouter(prefix="/v1", tags=["sessions"], responses=ERRORS)


@router.post("/sessions", response_model=SessionOut, status_code=status.HTTP_201_CREATED)
def register_session(
    body: SessionCreate,
    tenant_id: TenantId,
    uploads: UploadsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> SessionOut:
    """Register a recorded session and the media that will be uploaded for it.

    Send an `Idempotency-Key`: a replay with the same key and body returns the same session (200).
    """
    session, created = uploads.register(tenant_id, body, idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return session


@router.get("/sessions/{session_id}", response_model=SessionOut)
def get_session(session_id: str, tenant_id: TenantId, uploads: UploadsDep) -> SessionOut:
    return uploads.get(tenant_id, session_id)


@router.delete("/sessions/{session_id}", response_model=SessionOut)
def delete_session(session_id: str, tenant_id: TenantId, uploads: UploadsDep) -> SessionOut:
    """Erase every recording and derived object of the session; the record stays, marked `deleted`."""
    return uploads.delete(tenant_id, session_id)


@router.get("/sessions/{session_id}/media/{kind}/parts", response_model=PartsOut)
def list_parts(session_id: str, kind: MediaKind, tenant_id: TenantId, uploads: UploadsDep) -> PartsOut:
    """Which parts have arrived (through the API or presigned URLs) and which are missing: resume from here."""
    return uploads.list_parts(tenant_id, session_id, kind)


@router.post("/sessions/{session_id}/media/{kind}/parts/presign", response_model=PresignOut)
def presign_parts(
    session_id: str, kind: MediaKind, body: PresignRequest, tenant_id: TenantId, uploads: UploadsDep
) -> PresignOut:
    """Presigned S3 URLs to PUT parts straight to object storage, bypassing the API."""
    return PresignOut(parts=uploads.presign_parts(tenant_id, session_id, kind, body.part_numbers))


@router.put("/sessions/{session_id}/media/{kind}/parts/{part_number}", response_model=PartOut)
async def put_part(
    session_id: str,
    kind: MediaKind,
    part_number: int,
    request: Request,
    tenant_id: TenantId,
    uploads: UploadsDep,
    x_part_sha256: Annotated[str | None, Header(description="optional hex SHA-256 of this part's bytes")] = None,
) -> PartOut:
    """Upload one part as the raw request body. Parts are `part_size` bytes, except the last."""
    expected = await run_in_threadpool(uploads.expected_part_size, tenant_id, session_id, kind, part_number)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != expected:
        raise IngestError(
            422,
            "part_size_invalid",
            f"part {part_number} of {kind} must be {expected} bytes, Content-Length is {declared}",
        )
    body = bytearray(expected)  # the one buffer this request holds; handed to S3 without a copy
    view, received = memoryview(body), 0
    async for chunk in request.stream():
        if received + len(chunk) > expected:
            raise IngestError(422, "part_size_invalid", f"part {part_number} of {kind} is longer than {expected} bytes")
        view[received : received + len(chunk)] = chunk
        received += len(chunk)
    del view
    if received < expected:
        del body[received:]
    return await run_in_threadpool(uploads.store_part, tenant_id, session_id, kind, part_number, body, x_part_sha256)


@router.post("/sessions/{session_id}/media/{kind}/complete", response_model=SessionOut)
def complete_media(session_id: str, kind: MediaKind, tenant_id: TenantId, uploads: UploadsDep) -> SessionOut:
    """Assemble the parts, verify size and SHA-256, and validate the file. Safe to call again."""
    return uploads.complete(tenant_id, session_id, kind)


def _problem_response(error: IngestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(
        error.problem().model_dump(exclude_none=True),
        status_code=error.status,
        media_type="application/problem+json",
        headers=headers,
    )


def create_app(context: IngestContext) -> FastAPI:
    app = FastAPI(
        title="proctor-pipeline",
        version="1",
        summary="Upload recorded exam sessions for integrity review.",
    )
    app.state.ingest = context

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
        context.check_ready()
        return {"status": "ready"}

    app.include_router(router)
    return app
