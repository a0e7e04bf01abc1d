"""`/v1/candidates/{candidate_id}`: a candidate's enrolment, and erasing the candidate (user retirement).

Candidate ids are the platform's pseudonymous ids, scoped to the calling tenant: another tenant's candidate
answers 404 `candidate_not_found`, like one that never existed. Neither route ever returns a face template.
"""

from __future__ import annotations

import logging
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import ERRORS, TenantId
from api.state import platform_api
from core import audit
from core.db import utcnow
from core.enrolments import erase_candidate, latest_enrolment
from core.tables import CandidateEnrolment, ExamSession, Tenant
from core.vocabulary import MediaKind
from ingest.schemas import EnrolmentQualityOut, IngestError
from storage.keys import InvalidIdentifier, safe_identifier

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["candidates"], responses=ERRORS)


class EnrolmentOut(BaseModel):
    """Whether the candidate has an enrolment the pipeline will compare their sessions with, and which."""

    candidate_id: str
    enrolled: bool
    enrolled_at: datetime | None = Field(description="when the enrolment in use was accepted")
    session_id: str | None = Field(description="the session that uploaded it (null if that session is gone)")
    kind: MediaKind | None = Field(description="enrolment_photo or enrolment_clip")
    quality: EnrolmentQualityOut | None
    enrolments_kept: int = Field(description="accepted enrolments stored for this candidate, the one in use included")


class CandidateErasureOut(BaseModel):
    """What `DELETE /v1/candidates/{id}` erased. A repeated call erases nothing more and reports zeros."""

    candidate_id: str
    sessions_erased: list[str] = Field(description="the candidate's live sessions, now erased and `deleted`")
    enrolments_erased: int
    objects_removed: int = Field(description="stored objects deleted: recordings, results, enrolment files")


def _not_found(candidate_id: str) -> IngestError:
    return IngestError(404, "candidate_not_found", f"no candidate {candidate_id!r} for this API key")


def _known(db: Session, tenant_id: str, candidate_id: str) -> bool:
    """Whether this tenant ever registered a session of the candidate or holds an enrolment of theirs."""
    try:
        safe_identifier("candidate_id", candidate_id)
    except InvalidIdentifier:
        return False  # registration refuses such ids: no candidate can have one
    sessions = db.scalar(
        select(func.count())
        .select_from(ExamSession)
        .where(ExamSession.tenant_id == tenant_id, ExamSession.candidate_id == candidate_id)
    )
    return bool(sessions) or _enrolments(db, tenant_id, candidate_id) > 0


def _enrolments(db: Session, tenant_id: str, candidate_id: str) -> int:
    return int(
        db.scalar(
            select(func.count())
            .select_from(CandidateEnrolment)
            .where(CandidateEnrolment.tenant_id == tenant_id, CandidateEnrolment.candidate_id == candidate_id)
        )
        or 0
    )


def _actor(db: Session, tenant_id: str) -> str:
    tenant = db.get(Tenant, tenant_id)
    return f"api:{tenant.slug if tenant else tenant_id}"


@router.get("/candidates/{candidate_id}/enrolment", response_model=EnrolmentOut, operation_id="getEnrolment")
def get_enrolment(candidate_id: str, tenant_id: TenantId, request: Request) -> EnrolmentOut:
    """The enrolment the candidate's next session will be compared with: when and from which session it
    came, and how it measured. `enrolled` is false when none was accepted (or it was erased)."""
    platform = platform_api(request)
    with platform.db() as db:
        if not _known(db, tenant_id, candidate_id):
            raise _not_found(candidate_id)
        enrolment = latest_enrolment(db, tenant_id, candidate_id)
        audit.record(
            db, _actor(db, tenant_id), "api_read_enrolment", at=utcnow(), tenant_id=tenant_id,
            candidate_id=candidate_id, ip=request.client.host if request.client else None,
        )  # fmt: skip
        out = EnrolmentOut(
            candidate_id=candidate_id,
            enrolled=enrolment is not None,
            enrolled_at=enrolment.created_at if enrolment else None,
            session_id=enrolment.session_id if enrolment else None,
            kind=MediaKind(enrolment.kind) if enrolment else None,
            quality=EnrolmentQualityOut(
                frames=enrolment.frames,
                face_size_px=round(enrolment.face_size_px, 1),
                brightness=round(enrolment.brightness, 1),
                sharpness=round(enrolment.sharpness, 4),
            )
            if enrolment
            else None,
            enrolments_kept=_enrolments(db, tenant_id, candidate_id),
        )
        db.commit()
    return out


@router.delete("/candidates/{candidate_id}", response_model=CandidateErasureOut, operation_id="deleteCandidate")
def delete_candidate(candidate_id: str, tenant_id: TenantId, request: Request) -> CandidateErasureOut:
    """Erase the candidate: every enrolment (files and templates) and every session of theirs (recordings,
    results, per-session face embeddings; the session records stay, `deleted`). Safe to repeat."""
    platform = platform_api(request)
    with platform.db() as db:
        if not _known(db, tenant_id, candidate_id):
            raise _not_found(candidate_id)
        erasure = erase_candidate(db, platform.store, tenant_id, candidate_id, erased_by=_actor(db, tenant_id))
        if erasure is None:
            raise _not_found(candidate_id)
        db.commit()
    log.info(
        "candidate erased",
        extra={
            "tenant_id": tenant_id,
            "sessions_erased": len(erasure.sessions_erased),
            "enrolments_erased": erasure.enrolments_erased,
            "objects_removed": erasure.objects_removed,
        },
    )
    return CandidateErasureOut(
        candidate_id=erasure.candidate_id,
        sessions_erased=erasure.sessions_erased,
        enrolments_erased=erasure.enrolments_erased,
        objects_removed=erasure.objects_removed,
    )
