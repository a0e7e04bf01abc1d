"""`/v1/sessions`: the upload protocol over HTTP, a thin layer over `ingest.uploads.Uploads`.

Part bodies are streamed and size-checked as they arrive; at most one part per request is held in memory,
never the upload. Object storage that stops answering midway (`StorageUnavailable`) is a 503
`storage_unavailable` with `Retry-After` from every route here, never a bare 500: the client retries, and
the upload resumes from the parts already stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from api.auth import ERRORS, PROBLEM, TenantId
from api.problems import storage_unavailable
from api.state import platform_api
from core.vocabulary import MediaKind
from ingest.schemas import IngestError, PartOut, PartsOut, PresignOut, PresignRequest, SessionCreate, SessionOut
from ingest.uploads import Uploads
from storage.object_store import StorageUnavailable

log = logging.getLogger(__name__)


def _uploads(request: Request) -> Uploads:
    return platform_api(request).uploads


UploadsDep = Annotated[Uploads, Depends(_uploads)]


class _StorageAwareRoute(APIRoute):
    """A route whose object-storage outages answer 503 `storage_unavailable` (see the module's docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_storage_outage(request: Request) -> Response:
            try:
                return await handle(request)
            except StorageUnavailable as exc:
                log.warning(
                    "object storage unavailable",
                    extra={"method": request.method, "path": request.url.path, "op": exc.operation, "key": exc.key},
                )
                raise storage_unavailable(exc) from exc

        return handle_storage_outage


router = APIRouter(
    prefix="/v1",
    tags=["sessions"],
    responses={
        **ERRORS,
        503: {
            **PROBLEM,
            "description": "object storage is unavailable (`storage_unavailable`): retry after `Retry-After`",
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
        },
    },
    route_class=_StorageAwareRoute,
)


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
