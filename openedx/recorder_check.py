"""`POST /openedx/recorder/{attempt}/system-check`: an Open edX learner's camera checked before the exam.

The recorder page edX opens (`/recorder/?attempt=<id>`) holds no upload token until the exam starts, so the
attempt id, opaque and unguessable, is the capability, as for the recorder's other `/openedx/recorder` routes:
it opens this check while the attempt is live (`created`, `ready` or `started`). The frame is judged as
`ingest.system_check` judges it and stored nowhere.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from ingest.enrolment import EnrolmentChecks
from ingest.schemas import IngestError
from ingest.system_check import SystemCheckResult, check_camera_frame, check_frame_request
from openedx.recorder_side import live_attempt
from openedx.routes import PROBLEM, RECORDER_ERRORS


class _AppState(Protocol):
    """What this route reads from `request.app.state.platform` (the API's `PlatformApi`)."""

    @property
    def db(self) -> sessionmaker[Session]: ...
    @property
    def enrolment_checks(self) -> EnrolmentChecks | None: ...


router = APIRouter(
    prefix="/openedx/recorder",
    tags=["openedx"],
    responses={
        **RECORDER_ERRORS,
        413: {**PROBLEM, "description": "a frame over the body limit (`body_too_large`)"},
        415: {**PROBLEM, "description": "a body that is not `image/jpeg` (`unsupported_media_type`)"},
        422: {**PROBLEM, "description": "a body that is not a readable JPEG: see `code`"},
        503: {**PROBLEM, "description": "this server runs no face check (`system_check_unavailable`)"},
    },
)


def _state(request: Request) -> _AppState:
    state: _AppState = request.app.state.platform
    return state


def open_attempt(attempt: str, request: Request) -> str:
    """The attempt's id while it is live (`openedx.recorder_side.live_attempt`: 404 `edx_attempt_not_found`,
    409 `edx_attempt_state` once it is over), as for the recorder's other routes."""
    with _state(request).db() as db:
        return live_attempt(db, attempt).id


async def _frame(request: Request) -> bytes:
    body = await request.body()
    check_frame_request(request.headers.get("content-type"), body)
    return body


@router.post(
    "/{attempt}/system-check",
    response_model=SystemCheckResult,
    operation_id="edxRecorderSystemCheck",
    openapi_extra={"requestBody": {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def attempt_system_check(
    request: Request,
    _attempt: Annotated[str, Depends(open_attempt)],
    frame: Annotated[bytes, Depends(_frame)],
) -> SystemCheckResult:
    """Check one webcam still for an edX attempt: `ok`, or `problems` with a `code` and a plain-words message."""
    checks = _state(request).enrolment_checks
    if checks is None:
        raise IngestError(503, "system_check_unavailable", "this server runs no face check: ask its operator")
    return await run_in_threadpool(check_camera_frame, frame, checks)
