"""`GET /v1/sessions/{id}/review`: the review's outcome for the platform that owns the session (API key).

The same content as the `review.final` webhook, plus short-lived presigned URLs to each flag's evidence
frames (they expire after `PROCTOR_PRESIGNED_URL_TTL_S`). Every call is written to the audit trail.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from api.auth import ERRORS, TenantId
from api.state import platform_api
from core import audit
from core.db import utcnow
from core.states import SessionState
from core.tables import ExamSession, FlagSegment, Tenant
from ingest.schemas import IngestError
from review_ui.results import FlagWithEvidence, PlatformReview, review_result

router = APIRouter(prefix="/v1", tags=["review"], responses=ERRORS)


@router.get("/sessions/{session_id}/review", response_model=PlatformReview, operation_id="getReview")
def get_review(session_id: str, tenant_id: TenantId, request: Request) -> PlatformReview:
    """The outcome (Clean, Suspicious, Rules Violation, Not Reviewed) once final, per-flag decisions
    (start and end in seconds), and the reviewers' comments. `final` is false until the review is final."""
    platform = platform_api(request)
    with platform.db() as db:
        session = db.scalar(
            select(ExamSession).where(
                ExamSession.id == session_id,
                ExamSession.tenant_id == tenant_id,
                ExamSession.state != SessionState.DELETED.value,
            )
        )
        if session is None:
            raise IngestError(404, "session_not_found", f"no session {session_id} for this API key")
        result = review_result(db, session)
        evidence = dict(
            db.execute(
                select(FlagSegment.id, FlagSegment.evidence_keys).where(FlagSegment.session_id == session.id)
            ).all()
        )
        ttl = platform.presigned_url_ttl_s
        flags = [
            FlagWithEvidence(
                **flag.model_dump(),
                evidence_urls=[platform.store.presigned_get(key, ttl) for key in evidence.get(flag.id, [])],
            )
            for flag in result.flags
        ]
        tenant = db.get(Tenant, tenant_id)
        audit.record(
            db, f"api:{tenant.slug if tenant else tenant_id}", "api_read_review", at=utcnow(), tenant_id=tenant_id,
            session_id=session.id, ip=request.client.host if request.client else None,
        )  # fmt: skip
        db.commit()
    return PlatformReview(**result.model_dump(exclude={"flags"}), flags=flags)
