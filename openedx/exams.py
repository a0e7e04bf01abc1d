"""Exams and attempts as edX creates, moves and removes them, and retiring a learner.

Each edX exam owns one exam of the client's tenant (`core.tables.Exam`, external id `edx-<our exam id>`), whose
policy follows the exam's rules (`openedx.rules`). An attempt is registered when edX creates it and becomes one
of our sessions only when its recorder starts (`openedx.recorder_side`). Every lookup is scoped to the calling
client: another client's exam or attempt answers 404 like one that never existed.

An attempt moves `created -> ready` (its recorder is running) `-> started -> submitted`, or to `error` from
any state before `submitted`; asking for the state it is in is a no-op (edX retries), any other move is a 409.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import new_id, utcnow
from core.enrolments import erase_candidate
from core.exam_policy import ExamPolicy
from core.lms_tables import EdxAttempt, EdxClient, EdxExam
from core.policy_changes import apply_policy
from core.tables import Exam
from ingest.schemas import IngestError
from ingest.uploads import Uploads
from openedx.rules import normalised_rules, policy_for
from openedx.schemas import AttemptCreated, ExamIn, ExamOut
from openedx.tokens import EdxCaller
from storage.keys import InvalidIdentifier, safe_identifier
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)

CREATED: Final = "created"
READY: Final = "ready"
STARTED: Final = "started"
SUBMITTED: Final = "submitted"
ERROR: Final = "error"
LIVE: Final = frozenset({CREATED, READY, STARTED})  # while the recorder may start, get ready and upload
MOVES: Final[dict[str, frozenset[str]]] = {
    CREATED: frozenset({READY, STARTED, ERROR}),
    READY: frozenset({STARTED, ERROR}),
    STARTED: frozenset({SUBMITTED, ERROR}),
    SUBMITTED: frozenset(),
    ERROR: frozenset(),
}
EXTERNAL_ID_PREFIX: Final = "edx-"


def check_move(current: str, target: str) -> bool:
    """Whether an attempt in `current` may move to `target`; False when it already is there (nothing to do).

    Raises `IngestError` 409 `edx_attempt_state` for a move the lifecycle does not allow.
    """
    if current == target:
        return False
    if target not in MOVES.get(current, frozenset()):
        allowed = sorted(MOVES.get(current, frozenset()))
        raise IngestError(
            409,
            "edx_attempt_state",
            f"the attempt is {current}; it cannot become {target} (from {current}: {allowed or 'no further move'})",
            {"status": current, "requested": target},
        )
    return True


def exam_not_found(exam_id: str) -> IngestError:
    return IngestError(404, "edx_exam_not_found", f"no exam {exam_id!r} for this client: create it with POST /exam/")


def attempt_not_found(attempt_id: str) -> IngestError:
    return IngestError(404, "edx_attempt_not_found", f"no attempt {attempt_id!r} of this exam for this client")


def exam_out(exam: EdxExam) -> ExamOut:
    return ExamOut(
        id=exam.id,
        course_id=exam.course_id,
        name=exam.name,
        rules=normalised_rules(exam.rules),
        is_practice=exam.is_practice,
        is_proctored=exam.is_proctored,
    )


def client_exam(db: Session, caller: EdxCaller, exam_id: str) -> EdxExam:
    exam = db.get(EdxExam, exam_id)
    if exam is None or exam.client_pk != caller.client_pk:
        raise exam_not_found(exam_id)
    return exam


def client_attempt(db: Session, caller: EdxCaller, exam_id: str, attempt_id: str) -> EdxAttempt:
    exam = client_exam(db, caller, exam_id)
    attempt = db.get(EdxAttempt, attempt_id)
    if attempt is None or attempt.edx_exam_pk != exam.id:
        raise attempt_not_found(attempt_id)
    return attempt


class EdxExams:
    """Exams, attempts and retirement over a database session factory; safe to share across threads."""

    def __init__(self, db: Callable[[], AbstractContextManager[Session]], uploads: Uploads, store: ObjectStore) -> None:
        self._db = db
        self._uploads = uploads
        self._store = store

    # -- exams ------------------------------------------------------------------------------------------
    def save(self, caller: EdxCaller, body: ExamIn, exam_id: str | None = None) -> ExamOut:
        """Create the exam (`exam_id` None; an exam the client already saved under the same LMS id is updated)
        or update ours. Rules left out keep the exam's rules; rules sent replace them and the policy."""
        rules = normalised_rules(body.rules) if body.rules is not None else None
        for _ in range(2):  # a concurrent create of the same LMS exam: the second round updates it
            try:
                with self._db() as db:
                    if exam_id is not None:
                        exam = client_exam(db, caller, exam_id)
                    else:
                        exam = db.scalar(
                            select(EdxExam).where(EdxExam.client_pk == caller.client_pk, EdxExam.lms_exam_id == body.id)
                        ) or self._new_exam(db, caller, body)
                    self._apply(db, caller, exam, body, rules)
                    db.commit()
                    log.info("edx exam saved", extra={"edx_exam_id": exam.id, "client_id": caller.client_id})
                    return exam_out(exam)
            except IntegrityError:
                if exam_id is not None:
                    raise
        raise IngestError(409, "edx_exam_conflict", "the exam was saved concurrently: retry")

    def _new_exam(self, db: Session, caller: EdxCaller, body: ExamIn) -> EdxExam:
        exam_pk = new_id()
        tenant_exam = Exam(tenant_id=caller.tenant_id, external_id=EXTERNAL_ID_PREFIX + exam_pk, title=body.title)
        db.add(tenant_exam)
        db.flush()
        exam = EdxExam(
            id=exam_pk,
            client_pk=caller.client_pk,
            lms_exam_id=body.id,
            course_id=body.course_id,
            exam_id=tenant_exam.id,
        )
        db.add(exam)
        return exam

    def _apply(
        self, db: Session, caller: EdxCaller, exam: EdxExam, body: ExamIn, rules: dict[str, bool] | None
    ) -> None:
        """Save edX's fields. Rules that differ from the stored ones become the exam's policy the way an officer's
        edit does (`core.policy_changes`: a new version, audited, processed sessions queued for re-scoring); the
        same rules sent again leave the policy, and any officer's change made since, as they are."""
        tenant_exam = db.get(Exam, exam.exam_id)
        assert tenant_exam is not None  # the foreign key holds it (and deletes the EdxExam with it)
        now = utcnow()
        exam.course_id = body.course_id
        exam.name = body.title
        exam.is_practice = body.practice
        exam.is_proctored = body.is_proctored
        exam.updated_at = now
        tenant_exam.title = body.title
        wanted = rules if rules is not None else exam.rules or normalised_rules(None)
        if wanted != exam.rules:
            exam.rules = wanted
            apply_policy(db, tenant_exam, ExamPolicy.from_json(policy_for(wanted)), actor(caller), now)

    def get(self, caller: EdxCaller, exam_id: str) -> ExamOut:
        with self._db() as db:
            return exam_out(client_exam(db, caller, exam_id))

    # -- attempts ---------------------------------------------------------------------------------------
    def register_attempt(self, caller: EdxCaller, exam_id: str, user_id: str) -> AttemptCreated:
        """A new attempt of the learner; only edX's (obscured) user id is kept, never a name or an email."""
        try:
            safe_identifier("user_id", user_id)
        except InvalidIdentifier as exc:
            raise IngestError(422, "edx_user_id_invalid", str(exc)) from None
        with self._db() as db:
            exam = client_exam(db, caller, exam_id)
            attempt = EdxAttempt(edx_exam_pk=exam.id, user_id=user_id, status=CREATED)
            db.add(attempt)
            db.commit()
            log.info("edx attempt registered", extra={"edx_attempt_id": attempt.id, "edx_exam_id": exam.id})
            return AttemptCreated(id=attempt.id, status=attempt.status)

    def status(self, caller: EdxCaller, exam_id: str, attempt_id: str) -> str:
        with self._db() as db:
            return client_attempt(db, caller, exam_id, attempt_id).status

    def move(self, caller: EdxCaller, exam_id: str, attempt_id: str, target: str) -> str:
        with self._db() as db:
            attempt = client_attempt(db, caller, exam_id, attempt_id)
            if check_move(attempt.status, target):
                attempt.status, attempt.updated_at = target, utcnow()
                db.commit()
                log.info("edx attempt moved", extra={"edx_attempt_id": attempt_id, "status": target})
            return attempt.status

    def remove(self, caller: EdxCaller, exam_id: str, attempt_id: str) -> None:
        """Erase the attempt's session (recordings, results; the session row stays, `deleted`) and drop it."""
        with self._db() as db:
            session_id = client_attempt(db, caller, exam_id, attempt_id).session_id
        if session_id is not None:
            self._uploads.delete(
                caller.tenant_id,
                session_id,
                erased_by=actor(caller),
                code="edx_attempt_removed",
                reason="the attempt was removed in Open edX",
            )
        with self._db() as db:
            db.execute(delete(EdxAttempt).where(EdxAttempt.id == attempt_id))
            db.commit()
        log.info("edx attempt removed", extra={"edx_attempt_id": attempt_id, "session_id": session_id})

    # -- learners ---------------------------------------------------------------------------------------
    def retire(self, caller: EdxCaller, user_id: str) -> bool:
        """Erase every session and enrolment of the learner in the tenant and drop their attempts (safe to
        repeat: a learner we never saw is retired already)."""
        with self._db() as db:
            erasure = erase_candidate(db, self._store, caller.tenant_id, user_id, erased_by=actor(caller))
            tenant_clients = select(EdxClient.id).where(EdxClient.tenant_id == caller.tenant_id)
            tenant_exams = select(EdxExam.id).where(EdxExam.client_pk.in_(tenant_clients))
            db.execute(
                delete(EdxAttempt).where(EdxAttempt.user_id == user_id, EdxAttempt.edx_exam_pk.in_(tenant_exams))
            )
            db.commit()
        log.info(
            "edx learner retired",
            extra={
                "client_id": caller.client_id,
                "sessions_erased": len(erasure.sessions_erased) if erasure else 0,
                "objects_removed": erasure.objects_removed if erasure else 0,
            },
        )
        return True


def actor(caller: EdxCaller) -> str:
    """Who the audit trail names for what an edX client did (an erasure, a policy from its rules)."""
    return f"openedx:{caller.client_id}"
