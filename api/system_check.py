"""`POST /v1/sessions/{id}/system-check`: the candidate's camera checked before the exam, one JPEG frame.

The browser's recorder sends a still from the webcam; the answer says, in plain words, what the candidate
must fix (`ingest.system_check`). It takes the session's upload token (what the recorder holds) or the
tenant's API key, reads no more than `MAX_JPEG_BYTES` (`api.guards` refuses a longer body before it arrives),
and stores nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.auth import ERRORS, PROBLEM, UPLOAD_TOKEN_ERRORS, SessionTenantId
from api.state import platform_api
from ingest.enrolment import EnrolmentChecks
from ingest.records import tenant_session
from ingest.schemas import IngestError
from ingest.system_check import SystemCheckResult, check_camera_frame, check_frame_request

router = APIRouter(
    prefix="/v1",
    tags=["sessions"],
    responses={
        **ERRORS,
        **UPLOAD_TOKEN_ERRORS,
        415: {**PROBLEM, "description": "a body that is not `image/jpeg` (`unsupported_media_type`)"},
        503: {**PROBLEM, "description": "this server runs no face check (`system_check_unavailable`)"},
    },
)


def _session_owner(session_id: str, request: Request, tenant_id: SessionTenantId) -> str:
    """The caller's tenant (`SessionTenantId`: the session's upload token or the tenant's API key), once the
    session is known to be that tenant's (404 otherwise)."""
    with platform_api(request).db() as db:
        tenant_session(db, tenant_id, session_id)
    return tenant_id


def face_checks(request: Request) -> EnrolmentChecks:
    checks = platform_api(request).enrolment_checks
    if checks is None:
        raise IngestError(
            503, "system_check_unavailable", "this server runs no face check: skip the system check or ask its operator"
        )
    return checks


async def camera_frame(request: Request) -> bytes:
    """The request's body: one JPEG of at most `MAX_JPEG_BYTES`."""
    body = await request.body()
    check_frame_request(request.headers.get("content-type"), body)
    return body


@router.post(
    "/sessions/{session_id}/system-check",
    response_model=SystemCheckResult,
    operation_id="systemCheck",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def system_check(
    session_id: str,
    _tenant_id: Annotated[str, Depends(_session_owner)],
    checks: Annotated[EnrolmentChecks, Depends(face_checks)],
    frame: Annotated[bytes, Depends(camera_frame)],
) -> SystemCheckResult:
    """Check one webcam still: `ok`, or `problems` with a `code` and a message for the candidate. Takes the
    tenant's API key or this session's upload token."""
    return await run_in_threadpool(check_camera_frame, frame, checks)
