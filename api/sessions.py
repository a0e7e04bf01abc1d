"""`/v1/sessions`: the upload protocol over HTTP, a thin layer over `ingest.uploads.Uploads`.

Part bodies are streamed and size-checked as they arrive; at most one part per request is held in memory,
never the upload, and all parts in flight together within a bound; a stalled body is dropped (408), and the
part and complete routes' blocking work runs on threads of their own (`api.upload_capacity`). Object storage
that stops answering midway (`StorageUnavailable`) is a 503 `storage_unavailable` with `Retry-After` from every
route here, never a bare 500: the client retries, and the upload resumes from the parts already stored.

A browser recorder uploads with an upload token instead of the tenant's API key (issued by
`POST /v1/sessions/{id}/upload-tokens`): it opens that session's read, add-enrolment, parts and complete routes
only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Body, Depends, Header, Request, Response, status
from fastapi.routing import APIRoute

from api.auth import ERRORS, PROBLEM, UPLOAD_TOKEN_ERRORS, SessionTenantId, TenantId
from api.problems import storage_unavailable
from api.state import platform_api
from api.upload_capacity import received_part, upload_capacity
from core.vocabulary import MediaKind
from ingest.schemas import (
    CompleteRequest,
    IngestError,
    MediaDeclaration,
    PartOut,
    PartsOut,
    PresignOut,
    PresignRequest,
    SessionCreate,
    SessionOut,
    UploadTokenOut,
    UploadTokenRequest,
)
from ingest.streaming import part_checksum_required
from ingest.uploads import Uploads
from storage.object_store import StorageUnavailable

log = logging.getLogger(__name__)


def _uploads(request: Request) -> Uploads:
    return platform_api(request).uploads


UploadsDep = Annotated[Uploads, Depends(_uploads)]
RECORDING_WHILE_UPLOADING = {
    "summary": "a webcam recording uploaded while it is made",
    "value": {
        "exam_id": "exam-101",
        "candidate_id": "cand-7",
        "attempt_id": "attempt-1",
        "started_at": "2026-11-20T09:00:00Z",
        "media": [{"kind": "webcam", "content_type": "video/webm", "streaming": True}],
    },
}


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


@router.post(
    "/sessions",
    response_model=SessionOut,
    status_code=status.HTTP_201_CREATED,
    operation_id="registerSession",
    responses={
        200: {"model": SessionOut, "description": "a replay of an `Idempotency-Key` and body: that session"},
        403: {
            **PROBLEM,
            "description": "an upload token (`upload_token_scope`), or a tenant quota used up (`quota_exceeded`: open "
            "sessions, bytes in flight or storage; `details` names the quota, its limit, the use and the request)",
        },
        400: {
            **PROBLEM,
            "description": "a body that is not JSON (`bad_request`), an `Idempotency-Key` that is "
            "empty or longer than 255 characters (`invalid_idempotency_key`)",
        },
    },
)
def register_session(
    body: Annotated[SessionCreate, Body(openapi_examples={"streaming": RECORDING_WHILE_UPLOADING})],
    tenant_id: TenantId,
    uploads: UploadsDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="1-255 characters: makes a retry safe", json_schema_extra={"minLength": 1, "maxLength": 255}
        ),
    ] = None,
) -> SessionOut:
    """Register a recorded session and the media that will be uploaded for it.

    Send an `Idempotency-Key`: a replay with the same key and body returns the same session (200).
    """
    session, created = uploads.register(tenant_id, body, idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return session


@router.get(
    "/sessions/{session_id}", response_model=SessionOut, operation_id="getSession", responses=UPLOAD_TOKEN_ERRORS
)
def get_session(session_id: str, tenant_id: SessionTenantId, uploads: UploadsDep) -> SessionOut:
    """The session and its media. Takes the tenant's API key or this session's upload token."""
    return uploads.get(tenant_id, session_id)


@router.delete("/sessions/{session_id}", response_model=SessionOut, operation_id="deleteSession")
def delete_session(session_id: str, tenant_id: TenantId, uploads: UploadsDep) -> SessionOut:
    """Erase every recording and derived object of the session; the record stays, marked `deleted`."""
    return uploads.delete(tenant_id, session_id)


@router.post(
    "/sessions/{session_id}/upload-tokens",
    response_model=UploadTokenOut,
    status_code=status.HTTP_201_CREATED,
    operation_id="issueUploadToken",
    responses={410: {**PROBLEM, "description": "the session was erased (`session_deleted`)"}},
)
def issue_upload_token(
    session_id: str, tenant_id: TenantId, uploads: UploadsDep, body: UploadTokenRequest | None = None
) -> UploadTokenOut:
    """An upload token for a browser recorder, which must never hold the tenant's API key.

    Send it as `Authorization: Bearer put_...`. It opens only this session's `GET /v1/sessions/{id}`,
    `POST .../media` (an enrolment file), `GET .../media/{kind}/parts`, `PUT .../media/{kind}/parts/{n}` and
    `POST .../media/{kind}/complete`, until `expires_at`: `ttl_s` seconds (default and maximum: the server's
    `upload_token_ttl_s`, 4 h unless configured). Refusals: 401 `upload_token_invalid` (unknown, malformed, or its
    session erased), 401 `upload_token_expired`, 403 `upload_token_wrong_session`, and 403 `upload_token_scope` on
    any other route.
    """
    return uploads.issue_upload_token(tenant_id, session_id, body.ttl_s if body else None)


@router.post(
    "/sessions/{session_id}/media",
    response_model=SessionOut,
    status_code=status.HTTP_201_CREATED,
    operation_id="addMedia",
    responses={
        **UPLOAD_TOKEN_ERRORS,
        403: {
            **PROBLEM,
            "description": "an upload token of another session (`upload_token_wrong_session`), or the tenant's "
            "bytes-in-flight or storage quota used up (`quota_exceeded`: `details` names the quota, its limit, the use "
            "and the request)",
        },
        200: {"model": SessionOut, "description": "the same declaration again: the session, unchanged"},
        409: {
            **PROBLEM,
            "description": "the session has another file of this kind (`media_already_declared`) or is no longer "
            "uploading (`session_not_uploading`)",
        },
        410: {**PROBLEM, "description": "the session was erased (`session_deleted`)"},
        413: {**PROBLEM, "description": "larger than the enrolment limit (`media_too_large`)"},
        422: {
            **PROBLEM,
            "description": "not an enrolment file (`media_not_addable`), a server without enrolment "
            "(`enrolment_unavailable`), or an invalid declaration (`validation_error`)",
        },
    },
)
def add_media(
    session_id: str, body: MediaDeclaration, tenant_id: SessionTenantId, uploads: UploadsDep, response: Response
) -> SessionOut:
    """Add the candidate's enrolment file (`enrolment_photo` or `enrolment_clip`, with its size and SHA-256) to a
    session still uploading: what a recorder does once its camera check has taken the candidate's photo.

    At most one of each kind a session; the same declaration again is answered 200 with the session. Then upload
    its parts and complete it as for a file declared at registration: an accepted file becomes the candidate's
    enrolment, a refused one is rejected alone and the session goes on. Takes the tenant's API key or this
    session's upload token."""
    session, added = uploads.add_media(tenant_id, session_id, body)
    if not added:
        response.status_code = status.HTTP_200_OK
    return session


@router.get(
    "/sessions/{session_id}/media/{kind}/parts",
    response_model=PartsOut,
    operation_id="listParts",
    responses=UPLOAD_TOKEN_ERRORS,
)
def list_parts(session_id: str, kind: MediaKind, tenant_id: SessionTenantId, uploads: UploadsDep) -> PartsOut:
    """Which parts have arrived (through the API or presigned URLs) and which are missing: resume from here.

    For a streaming file not yet complete, `missing` lists the gaps below the highest part received, and
    `part_count` is null. Takes the tenant's API key or this session's upload token."""
    return uploads.list_parts(tenant_id, session_id, kind)


@router.post(
    "/sessions/{session_id}/media/{kind}/parts/presign", response_model=PresignOut, operation_id="presignParts"
)
def presign_parts(
    session_id: str, kind: MediaKind, body: PresignRequest, tenant_id: TenantId, uploads: UploadsDep
) -> PresignOut:
    """Presigned S3 URLs to PUT parts straight to object storage, bypassing the API.

    Not for a streaming file, whose parts must carry their SHA-256 (422 `presign_unavailable`)."""
    return PresignOut(parts=uploads.presign_parts(tenant_id, session_id, kind, body.part_numbers))


@router.put(
    "/sessions/{session_id}/media/{kind}/parts/{part_number}",
    response_model=PartOut,
    operation_id="uploadPart",
    # The route streams the raw body itself (below), so the framework sees no body to declare.
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the part's bytes",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        **UPLOAD_TOKEN_ERRORS,
        403: {
            **PROBLEM,
            "description": "an upload token of another session (`upload_token_wrong_session`), or the tenant's "
            "bytes-in-flight or storage quota used up (`quota_exceeded`: `details` names the quota, its limit, the use "
            "and the request)",
        },
        408: {
            **PROBLEM,
            "description": "the body sent nothing for the server's read timeout (`part_read_timeout`): nothing was "
            "stored; send the part again",
        },
        409: {
            **PROBLEM,
            "description": "a streaming file's part number already holds other bytes (`part_conflict`: the stored "
            "part is kept), or the media takes no more parts (`media_already_complete`, `session_closed`)",
        },
        413: {**PROBLEM, "description": "the part would take the file past the media limit (`media_too_large`)"},
        422: {
            **PROBLEM,
            "description": "wrong size (`part_size_invalid`), number (`part_number_out_of_range`) or checksum "
            "(`part_checksum_mismatch`), or a streaming file's part without X-Part-SHA256 (`part_checksum_required`)",
        },
        503: {
            **PROBLEM,
            "description": "the server holds as many parts in memory as it may (`upload_capacity`), or object "
            "storage is unavailable (`storage_unavailable`): retry after `Retry-After`",
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
        },
    },
)
async def put_part(
    session_id: str,
    kind: MediaKind,
    part_number: int,
    request: Request,
    tenant_id: SessionTenantId,
    uploads: UploadsDep,
    x_part_sha256: Annotated[
        str | None,
        Header(
            alias="X-Part-SHA256",
            description="hex SHA-256 of this part's bytes: optional, required for a streaming file",
        ),
    ] = None,
) -> PartOut:
    """Upload one part as the raw request body. Parts are `part_size` bytes, except the last.

    A streaming file's parts are at most `part_size` bytes (only the last may be shorter, which complete checks),
    each with `X-Part-SHA256`; sending a stored part again with the same bytes is answered 200 as stored. Takes
    the tenant's API key or this session's upload token."""
    capacity = upload_capacity(request)
    spec = await to_thread.run_sync(
        uploads.part_spec, tenant_id, session_id, kind, part_number, limiter=capacity.part_threads
    )
    if spec.streaming and x_part_sha256 is None:
        raise part_checksum_required(kind, part_number)
    what = f"part {part_number} of {kind}"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if not spec.allows(int(declared)):
            refused = f"{what} must be {spec.described}, Content-Length is {declared}"
            raise IngestError(422, "part_size_invalid", refused)
        if not capacity.buffers.has_room(int(declared)):
            raise capacity.buffers.refusal(what)
    async with received_part(request.stream(), what, spec.size, capacity) as body:
        return await to_thread.run_sync(
            uploads.store_part,
            tenant_id,
            session_id,
            kind,
            part_number,
            body,
            x_part_sha256,
            limiter=capacity.part_threads,
        )


@router.post(
    "/sessions/{session_id}/media/{kind}/complete",
    response_model=SessionOut,
    operation_id="completeMedia",
    responses={
        **UPLOAD_TOKEN_ERRORS,
        409: {
            **PROBLEM,
            "description": "a declared file's parts are missing or of the wrong size, or another "
            "request is verifying it (`complete_in_progress`): see `code`",
        },
        422: {
            **PROBLEM,
            "description": "the file was rejected (`size_mismatch`, `checksum_mismatch`, the probe's codes), or the "
            "request was refused: a streaming file without its size and SHA-256 (`final_checksum_required`), "
            "with a gap in its parts (`parts_missing`) or a short part that is not the last (`part_size_invalid`); "
            "a body that differs from the declaration (`declaration_mismatch`)",
        },
    },
)
async def complete_media(
    session_id: str,
    kind: MediaKind,
    request: Request,
    tenant_id: SessionTenantId,
    uploads: UploadsDep,
    body: CompleteRequest | None = None,
) -> SessionOut:
    """Assemble the parts, verify size and SHA-256, and validate the file. Safe to call again.

    A streaming file needs its size and SHA-256 in the body; a declared file's body is optional and must then
    match the declaration. Takes the tenant's API key or this session's upload token."""
    # Verifying reads the whole file back and probes it: a few at a time, on threads no other route needs.
    threads = upload_capacity(request).complete_threads
    return await to_thread.run_sync(uploads.complete, tenant_id, session_id, kind, body, limiter=threads)
