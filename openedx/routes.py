"""The Open edX REST proctoring backend's routes, under `/openedx` (edX's `base_url` is `https://<host>/openedx`).

edx-proctoring's `BaseRestProctoringProvider` calls: the OAuth token endpoint, the config, exams, attempts and
user retirement, each with `Authorization: JWT <token>` (`openedx.tokens`). The recorder page calls its own
routes with the attempt id as its capability (`openedx.recorder_side`). Refusals are problem documents with a
stable `code`, but for the token endpoint's, which follow RFC 6749.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from core.db import utcnow
from core.secrets_box import SecretBox
from ingest.schemas import Problem
from ingest.uploads import Uploads
from openedx import texts
from openedx.exams import EdxExams
from openedx.recorder_side import RecorderSide
from openedx.schemas import (
    AttemptCreated,
    AttemptIn,
    AttemptOut,
    AttemptPatch,
    AttemptStatus,
    ConfigOut,
    Deleted,
    ExamIn,
    ExamOut,
    RecorderSession,
    TokenOut,
)
from openedx.tokens import EdxCaller, OAuthRefusal, bearer, grant, token_form, verify
from storage.object_store import ObjectStore

PREFIX = "/openedx"
RECORDER_PATH = "/recorder/"
PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, object]] = {
    401: {**PROBLEM, "description": "`edx_token_missing`, `edx_token_invalid`, `edx_token_expired`"},
    404: {**PROBLEM, "description": "`edx_exam_not_found`, `edx_attempt_not_found`"},
    409: {**PROBLEM, "description": "`edx_attempt_state`: a move the attempt's lifecycle does not allow"},
    422: {**PROBLEM, "description": "rejected input: see `code`"},
}
RECORDER_ERRORS: dict[int | str, dict[str, object]] = {
    404: {**PROBLEM, "description": "`edx_attempt_not_found`: stop recording"},
    409: {**PROBLEM, "description": "`edx_attempt_state` (the attempt is over), `edx_recorder_not_started`"},
}


@dataclass(frozen=True)
class OpenEdx:
    """What the routes use: the database, the secrets box, the services, and the public base URL (None: the
    request's own)."""

    db: Callable[[], AbstractContextManager[Session]]
    secrets: SecretBox
    exams: EdxExams
    recorder: RecorderSide
    public_url: str | None

    def recorder_url(self, request: Request) -> str:
        base = self.public_url or str(request.base_url)
        return base.rstrip("/") + RECORDER_PATH


def mount_openedx(
    app: FastAPI,
    db: Callable[[], AbstractContextManager[Session]],
    uploads: Uploads,
    secrets: SecretBox,
    store: ObjectStore,
    *,
    public_url: str | None = None,
) -> OpenEdx:
    """Serve the backend on `app` (whose handlers turn `IngestError` into problem documents)."""
    backend = OpenEdx(db, secrets, EdxExams(db, uploads, store), RecorderSide(db, uploads), public_url)
    app.state.openedx = backend
    app.include_router(backend_router(backend))
    app.include_router(recorder_router(backend))
    return backend


def edx_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> EdxCaller:
    """The edX client whose access token the request carries (`openedx.tokens.verify`)."""
    token = bearer(authorization)
    backend: OpenEdx = request.app.state.openedx
    with backend.db() as db:
        return verify(db, backend.secrets, token)


Caller = Annotated[EdxCaller, Depends(edx_caller)]
Language = Annotated[str | None, Header(alias="Accept-Language")]


def backend_router(backend: OpenEdx) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["openedx"])

    @router.post(
        "/oauth2/access_token",
        response_model=TokenOut,
        operation_id="edxAccessToken",
        responses={400: {"description": "RFC 6749 error"}, 401: {"description": "RFC 6749 `invalid_client`"}},
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type", "client_id", "client_secret"],
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                "client_id": {"type": "string"},
                                "client_secret": {"type": "string"},
                                "token_type": {"type": "string", "enum": ["jwt", "bearer"]},
                            },
                        }
                    }
                }
            }
        },
    )
    async def access_token(request: Request) -> JSONResponse:
        """OAuth 2 client credentials (RFC 6749 section 4.4): an access token valid one hour (`expires_in`)."""
        body = await request.body()

        def issue() -> dict[str, object]:
            form = token_form(body, request.headers.get("authorization"))
            with backend.db() as db:
                return grant(db, backend.secrets, form, utcnow())

        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            token = await to_thread.run_sync(issue)
        except OAuthRefusal as refusal:
            if refusal.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="openedx"'
            return JSONResponse(refusal.body(), status_code=refusal.status, headers=headers)
        return JSONResponse(token, headers=headers)

    @router.get("/api/v1/config/", response_model=ConfigOut, operation_id="edxGetConfig", responses=ERRORS)
    def config(_caller: Caller, request: Request, accept_language: Language = None) -> ConfigOut:
        """The backend's name, the rules an exam may set, the learner's instructions and the recorder page."""
        language = texts.negotiate(accept_language)
        return ConfigOut(
            name=texts.BACKEND_NAME,
            rules=texts.rule_texts(language),
            instructions=texts.instructions(language),
            download_url=backend.recorder_url(request),
        )

    @router.post("/api/v1/exam/", response_model=ExamOut, operation_id="edxCreateExam", responses=ERRORS)
    def create_exam(caller: Caller, body: ExamIn) -> ExamOut:
        """Create the exam (saving one the client already created, by the LMS's id, updates it)."""
        return backend.exams.save(caller, body)

    @router.get("/api/v1/exam/{exam_id}/", response_model=ExamOut, operation_id="edxGetExam", responses=ERRORS)
    def get_exam(caller: Caller, exam_id: str) -> ExamOut:
        return backend.exams.get(caller, exam_id)

    @router.post("/api/v1/exam/{exam_id}/", response_model=ExamOut, operation_id="edxUpdateExam", responses=ERRORS)
    def update_exam(caller: Caller, exam_id: str, body: ExamIn) -> ExamOut:
        """Update the exam; rules sent replace its rules and its flagging policy."""
        return backend.exams.save(caller, body, exam_id)

    @router.post(
        "/api/v1/exam/{exam_id}/attempt/",
        response_model=AttemptCreated,
        operation_id="edxRegisterAttempt",
        responses=ERRORS,
    )
    def register_attempt(caller: Caller, exam_id: str, body: AttemptIn) -> AttemptCreated:
        """Register a learner's attempt (HTTP 200, as edX requires). Only the obscured user id is kept."""
        return backend.exams.register_attempt(caller, exam_id, body.user_id)

    @router.get(
        "/api/v1/exam/{exam_id}/attempt/{attempt_id}/",
        response_model=AttemptOut,
        operation_id="edxGetAttempt",
        responses=ERRORS,
    )
    def get_attempt(
        caller: Caller, exam_id: str, attempt_id: str, request: Request, accept_language: Language = None
    ) -> AttemptOut:
        status = backend.exams.status(caller, exam_id, attempt_id)
        return AttemptOut(
            id=attempt_id,
            status=status,
            instructions=texts.instructions(texts.negotiate(accept_language)),
            download_url=f"{backend.recorder_url(request)}?attempt={attempt_id}",
        )

    @router.patch(
        "/api/v1/exam/{exam_id}/attempt/{attempt_id}/",
        response_model=AttemptStatus,
        operation_id="edxMoveAttempt",
        responses=ERRORS,
    )
    def patch_attempt(caller: Caller, exam_id: str, attempt_id: str, body: AttemptPatch) -> AttemptStatus:
        """Move the attempt: started, submitted (the recorder then stops) or error."""
        return AttemptStatus(status=backend.exams.move(caller, exam_id, attempt_id, body.status))

    @router.delete(
        "/api/v1/exam/{exam_id}/attempt/{attempt_id}/",
        response_model=Deleted,
        operation_id="edxDeleteAttempt",
        responses=ERRORS,
    )
    def delete_attempt(caller: Caller, exam_id: str, attempt_id: str) -> Deleted:
        """Remove the attempt and erase its session's recordings and results."""
        backend.exams.remove(caller, exam_id, attempt_id)
        return Deleted()

    @router.delete("/api/v1/user/{user_id}/", response_model=bool, operation_id="edxRetireUser", responses=ERRORS)
    def retire_user(caller: Caller, user_id: str) -> bool:
        """Retire a learner: erase every session and enrolment of theirs in the tenant. Answers `true`."""
        return backend.exams.retire(caller, user_id)

    return router


def recorder_router(backend: OpenEdx) -> APIRouter:
    router = APIRouter(prefix=PREFIX + "/recorder", tags=["openedx"], responses=RECORDER_ERRORS)

    @router.post("/{attempt_id}/start", response_model=RecorderSession, operation_id="edxRecorderStart")
    def start(attempt_id: str) -> RecorderSession:
        """The session to upload the attempt's recordings to (the same on every call) and a fresh upload token."""
        return backend.recorder.start(attempt_id)

    @router.post("/{attempt_id}/ready", response_model=AttemptStatus, operation_id="edxRecorderReady")
    def ready(attempt_id: str) -> AttemptStatus:
        """The recorder is recording: the attempt becomes ready and edX lets the learner start."""
        return backend.recorder.ready(attempt_id)

    @router.post("/{attempt_id}/heartbeat", response_model=AttemptStatus, operation_id="edxRecorderHeartbeat")
    def heartbeat(attempt_id: str) -> AttemptStatus:
        """The recorder is alive; answers the attempt's status (stop and complete at submitted or error)."""
        return backend.recorder.heartbeat(attempt_id)

    return router
