"""What the learner's recorder page calls: start (our session for the attempt), ready, and heartbeats.

The recorder holds no edX token: the attempt id (random, 128 bits, known only to edX, the learner's browser
and us) is the capability, and it opens these routes only while the attempt is created, ready or started
(heartbeats answer in any state, so the recorder learns that the exam was submitted). `start` registers,
once, the session the recorder uploads to (`ingest.uploads.Uploads.register`, media streamed while the exam
runs) and owes edX the review outcome (`SessionCallback`, channel `openedx`); `ready` tells edX, once, that
the learner may begin (a `WebhookDelivery` on the `openedx` channel, sent by that channel's sender).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import utcnow
from core.lms_tables import EdxAttempt, EdxClient, EdxExam, SessionCallback
from core.tables import Exam, WebhookDelivery
from core.vocabulary import MediaKind
from ingest.schemas import IngestError, MediaDeclaration, SessionCreate
from ingest.uploads import Uploads
from openedx.exams import CREATED, LIVE, READY, attempt_not_found
from openedx.rules import record_screen
from openedx.schemas import AttemptStatus, RecorderSession

log = logging.getLogger(__name__)

CHANNEL: Final = "openedx"
READY_EVENT: Final = "openedx.ready"
REVIEWED_EVENT: Final = "review.final"


def lms_attempt_url(lms_url: str, attempt_id: str, what: str) -> str:
    """edX's callback for an attempt: `ready` or `reviewed` (edx-proctoring's docs/backends.rst)."""
    return f"{lms_url}/api/edx_proctoring/v1/proctored_exam/attempt/{attempt_id}/{what}"


def recorder_media(screen: bool) -> list[MediaDeclaration]:
    """The webcam and the event log streamed, and the screen too if the exam's rules say so. The enrolment
    photo the camera check took is added later by the recorder (`POST /v1/sessions/{id}/media`)."""
    media = [
        MediaDeclaration(kind=MediaKind.WEBCAM, content_type="video/webm", streaming=True),
        MediaDeclaration(kind=MediaKind.EVENTS, content_type="application/x-ndjson", streaming=True),
    ]
    if screen:
        media.append(MediaDeclaration(kind=MediaKind.SCREEN, content_type="video/webm", streaming=True))
    return media


def live_attempt(db: Session, attempt_id: str) -> EdxAttempt:
    attempt = db.get(EdxAttempt, attempt_id)
    if attempt is None:
        raise attempt_not_found(attempt_id)
    if attempt.status not in LIVE:
        raise IngestError(
            409,
            "edx_attempt_state",
            f"the attempt is {attempt.status}: the recorder has nothing more to do",
            {"status": attempt.status},
        )
    return attempt


class RecorderSide:
    """The recorder's routes' logic over a database session factory and the upload service."""

    def __init__(self, db: Callable[[], AbstractContextManager[Session]], uploads: Uploads) -> None:
        self._db = db
        self._uploads = uploads

    def start(self, attempt_id: str) -> RecorderSession:
        """The attempt's session (registered on the first call; a reload gets the same one) and a fresh token."""
        with self._db() as db:
            attempt = live_attempt(db, attempt_id)
            edx_exam = db.get(EdxExam, attempt.edx_exam_pk)
            assert edx_exam is not None  # the foreign key holds it
            client, exam = db.get(EdxClient, edx_exam.client_pk), db.get(Exam, edx_exam.exam_id)
            assert client is not None and exam is not None
            tenant_id, screen, session_id = client.tenant_id, record_screen(edx_exam.rules), attempt.session_id
            request = SessionCreate(
                exam_id=exam.external_id,
                candidate_id=attempt.user_id,
                attempt_id=attempt.id,
                started_at=utcnow(),
                exam_title=edx_exam.name,
                media=recorder_media(screen),
            )
            reviewed_url, client_pk = lms_attempt_url(client.lms_url, attempt.id, "reviewed"), client.id
        if session_id is None:
            session_id = self._register(tenant_id, request)
            self._bind(attempt_id, session_id, reviewed_url, client_pk)
        token = self._uploads.issue_upload_token(tenant_id, session_id)
        session = self._uploads.get(tenant_id, session_id)
        return RecorderSession(
            session_id=session_id,
            upload_token=token.token,
            expires_at=token.expires_at,
            record_screen=screen,
            media=session.media,
        )

    def _register(self, tenant_id: str, request: SessionCreate) -> str:
        try:
            session, _ = self._uploads.register(tenant_id, request, None)
        except IngestError as refused:  # a concurrent start registered it first
            existing = (refused.details or {}).get("session_id")
            if refused.code != "attempt_already_registered" or not existing:
                raise
            return str(existing)
        log.info(
            "edx attempt session registered", extra={"edx_attempt_id": request.attempt_id, "session_id": session.id}
        )
        return session.id

    def _bind(self, attempt_id: str, session_id: str, reviewed_url: str, client_pk: str) -> None:
        """Keep the session on the attempt and owe edX its review outcome (once, whoever starts first)."""
        with self._db() as db:
            attempt = db.get(EdxAttempt, attempt_id)
            if attempt is None:
                raise attempt_not_found(attempt_id)
            attempt.session_id, attempt.updated_at = session_id, utcnow()
            owed = db.scalar(
                select(SessionCallback.id).where(
                    SessionCallback.session_id == session_id,
                    SessionCallback.event == REVIEWED_EVENT,
                    SessionCallback.channel == CHANNEL,
                )
            )
            if owed is None:
                db.add(
                    SessionCallback(
                        session_id=session_id, event=REVIEWED_EVENT, channel=CHANNEL, url=reviewed_url, ref=client_pk
                    )
                )
            try:
                db.commit()
            except IntegrityError:  # the concurrent start added the same callback first
                db.rollback()
                attempt = db.get(EdxAttempt, attempt_id)
                if attempt is not None:
                    attempt.session_id = session_id
                    db.commit()

    def ready(self, attempt_id: str) -> AttemptStatus:
        """The recorder runs: the attempt becomes ready and edX is told so, once."""
        with self._db() as db:
            attempt = live_attempt(db, attempt_id)
            if attempt.session_id is None:
                raise IngestError(
                    409, "edx_recorder_not_started", "call POST /openedx/recorder/{attempt_id}/start first"
                )
            if attempt.status == CREATED:
                attempt.status, attempt.updated_at = READY, utcnow()
            told = db.scalar(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.session_id == attempt.session_id,
                    WebhookDelivery.event == READY_EVENT,
                    WebhookDelivery.channel == CHANNEL,
                )
            )
            if told is None:
                edx_exam = db.get(EdxExam, attempt.edx_exam_pk)
                client = db.get(EdxClient, edx_exam.client_pk) if edx_exam else None
                assert client is not None  # the foreign keys hold them
                db.add(
                    WebhookDelivery(
                        tenant_id=client.tenant_id,
                        session_id=attempt.session_id,
                        event=READY_EVENT,
                        url=lms_attempt_url(client.lms_url, attempt.id, "ready"),
                        body='{"status": "ready"}',
                        next_attempt_at=utcnow(),
                        channel=CHANNEL,
                        ref=client.id,
                    )
                )
            db.commit()
            log.info("edx attempt ready", extra={"edx_attempt_id": attempt_id, "status": attempt.status})
            return AttemptStatus(status=attempt.status)

    def heartbeat(self, attempt_id: str) -> AttemptStatus:
        """The recorder is alive; it learns the attempt's status (it stops at submitted or error, or a 404)."""
        with self._db() as db:
            attempt = db.get(EdxAttempt, attempt_id)
            if attempt is None:
                raise attempt_not_found(attempt_id)
            attempt.recorder_seen_at = utcnow()
            db.commit()
            return AttemptStatus(status=attempt.status)
