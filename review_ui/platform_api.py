"""`GET /v1/sessions/{id}/review`: the review's outcome for the platform that owns the session (API key).

The same JSON as the `review.final` webhook, plus short-lived presigned URLs to each flag's evidence
frames (they expire after `PROCTOR_PRESIGNED_URL_TTL_S`). Every call is written to the audit trail.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from ingest import audit
from ingest.api import ERRORS, TenantId
from ingest.context import IngestContext
from ingest.db import ExamSession, FlagSegment, Tenant, utcnow
from ingest.schemas import IngestError
from ingest.states import SessionState
from review_ui.results import review_result

router = APIRouter(prefix="/v1", tags=["review"], responses=ERRORS)


@router.get("/sessions/{session_id}/review")
def get_review(session_id: str, tenant_id: TenantId, request: Request) -> dict[str, Any]:
    """The outcome (Clean, Suspicious, Rules Violation, Not Reviewed) once final, per-flag decisions
    (start and end in seconds), and the reviewers' comments. `final` is false until the review is final."""
    context: IngestContext = request.app.state.ingest
    with context.db() as db:
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
        ttl = context.settings.presigned_url_ttl_s
        for flag in result["flags"]:
            flag["evidence_urls"] = [context.store.presigned_get(key, ttl) for key in evidence.get(flag["id"], [])]
        tenant = db.get(Tenant, tenant_id)
        audit.record(
            db, f"api:{tenant.slug if tenant else tenant_id}", "api_read_review", at=utcnow(), tenant_id=tenant_id,
            session_id=session.id, ip=request.client.host if request.client else None,
        )  # fmt: skip
        db.commit()
    return result
