"""`/v1/exams/{exam_id}/policy`: an exam's flagging policy, read and set by the platform that owns the exam.

`exam_id` is the platform's own exam id, the one its sessions are registered under. Setting a policy is what an
integrity officer's "Apply" is in the review UI (`core.policy_changes`): the exam's next policy version,
audited with the policy before and after, and the re-scoring of its processed sessions queued, except those
whose review is final (listed, with why). An exam no session named yet is created, so that a platform can set
the policy before the exam opens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import ERRORS, PROBLEM, TenantId
from api.state import platform_api
from core.db import utcnow
from core.exam_policy import (
    MAX_ALLOWED_AIDS,
    MAX_DURATION_MS,
    MAX_SENSITIVITY,
    MIN_SENSITIVITY,
    ExamPolicy,
    PolicyInvalid,
)
from core.policy_changes import apply_policy, policy_history, stored_policy
from core.tables import Exam, Tenant
from core.vocabulary import FlagKind
from ingest.schemas import IngestError
from storage.keys import InvalidIdentifier, safe_identifier

router = APIRouter(prefix="/v1", tags=["exams"], responses=ERRORS)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {**PROBLEM, "description": "`exam_not_found`: no exam with this id for this API key"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {**PROBLEM, "description": "`validation_error` (a field out of range), `policy_invalid` (`details.field`)"}
}
# Strict: JSON's `false` is not the number 0, nor `2000.0` a whole number of milliseconds (the document says so).
Milliseconds = Annotated[int, Strict(), Field(ge=0, le=MAX_DURATION_MS)]
Share = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
Degrees = Annotated[float, Strict(), Field(gt=0, le=180)]


class KindPolicyIn(BaseModel):
    """One flag kind's settings; a field left out keeps that kind's default."""

    model_config = ConfigDict(extra="forbid")
    enabled: StrictBool | None = None
    enter: Share | None = Field(None, description="evidence that opens a flag")
    exit: Share | None = Field(None, description="evidence below which it closes; at most `enter`")
    min_duration_ms: Milliseconds | None = Field(None, description="shorter episodes are not flagged")
    merge_gap_ms: Milliseconds | None = Field(None, description="flags closer than this are merged")
    max_unknown_ms: Milliseconds | None = Field(None, description="frames that cannot tell, bridged up to this")
    weight: Share | None = Field(None, description="share in the session's risk score")


class TolerancesIn(BaseModel):
    """How far from the calibrated "at the screen" a candidate may look; left out: the detectors' default."""

    model_config = ConfigDict(extra="forbid")
    yaw_deg: Degrees | None = None
    pitch_deg: Degrees | None = None
    gaze_h: Degrees | None = None


class AutoClearIn(BaseModel):
    """Whether the review UI marks Clean, with no reviewer, the sessions the detectors found nothing in; left out:
    off, max_risk 0, qc_sample_rate 0.1."""

    model_config = ConfigDict(extra="forbid")
    enabled: StrictBool | None = None
    max_risk: Share | None = Field(
        None,
        description="the highest risk score cleared (it weighs each flag's score and length; 0: no flag that counts)",
    )
    qc_sample_rate: Share | None = Field(
        None, description="the share of those sent to reviewers instead, as a quality-control sample"
    )


class ExamPolicyIn(BaseModel):
    """The whole policy: kinds left out keep their defaults."""

    model_config = ConfigDict(extra="forbid")
    sensitivity: Annotated[float, Strict()] = Field(
        1.0, ge=MIN_SENSITIVITY, le=MAX_SENSITIVITY, description="2 flags episodes half as long"
    )
    kinds: dict[FlagKind, KindPolicyIn] = Field(default_factory=dict)
    looking_away: TolerancesIn | None = None
    allowed_aids: StrictStr = Field(
        "", max_length=MAX_ALLOWED_AIDS, description="shown to reviewers, e.g. 'a calculator'"
    )
    auto_clear: AutoClearIn | None = None


class KindPolicyOut(BaseModel):
    enabled: bool
    enter: float
    exit: float
    min_duration_ms: int
    merge_gap_ms: int
    max_unknown_ms: int
    weight: float


class TolerancesOut(BaseModel):
    yaw_deg: float | None
    pitch_deg: float | None
    gaze_h: float | None


class AutoClearOut(BaseModel):
    enabled: bool
    max_risk: float
    qc_sample_rate: float


class PolicyOut(BaseModel):
    sensitivity: float
    kinds: dict[FlagKind, KindPolicyOut]
    looking_away: TolerancesOut
    allowed_aids: str
    auto_clear: AutoClearOut


class ExamPolicyOut(BaseModel):
    """The policy the exam's sessions are scored under, every kind's settings written out."""

    exam_id: str = Field(description="the platform's exam id")
    version: int = Field(description="1, 2, ... with each change; 0 while it was never set")
    changed_at: datetime | None
    policy: PolicyOut


class SessionNotRescored(BaseModel):
    session_id: str
    reason: str = Field(description="e.g. 'final (reopen to re-score)': a final review is never re-scored")


class PolicyAppliedOut(ExamPolicyOut):
    changed: bool = Field(description="false when the policy sent is the current one (nothing new is recorded)")
    rescore_queued: int = Field(description="processed sessions whose re-scoring from stored signals was queued")
    not_rescored: list[SessionNotRescored]


def _exam(db: Session, tenant_id: str, exam_id: str) -> Exam | None:
    return db.scalar(select(Exam).where(Exam.tenant_id == tenant_id, Exam.external_id == exam_id))


def _out(db: Session, exam: Exam) -> dict[str, Any]:
    policy = stored_policy(exam) or ExamPolicy()
    history = policy_history(db, exam.id)
    body = policy.to_json()
    body["looking_away"] = {name: body["looking_away"].get(name) for name in ("yaw_deg", "pitch_deg", "gaze_h")}
    return {
        "exam_id": exam.external_id,
        "version": history[0].version if history else 0,
        "changed_at": history[0].changed_at if history else None,
        "policy": body,
    }


@router.get("/exams/{exam_id}/policy", response_model=ExamPolicyOut, operation_id="getExamPolicy", responses=NOT_FOUND)
def get_exam_policy(exam_id: str, tenant_id: TenantId, request: Request) -> ExamPolicyOut:
    """The exam's flagging policy and its version."""
    with platform_api(request).db() as db:
        exam = _exam(db, tenant_id, exam_id)
        if exam is None:
            raise IngestError(404, "exam_not_found", f"no exam {exam_id!r} for this API key")
        return ExamPolicyOut(**_out(db, exam))


@router.put(
    "/exams/{exam_id}/policy",
    response_model=PolicyAppliedOut,
    operation_id="setExamPolicy",
    responses={**NOT_FOUND, **REFUSED},
)
def set_exam_policy(exam_id: str, body: ExamPolicyIn, tenant_id: TenantId, request: Request) -> PolicyAppliedOut:
    """Set the exam's flagging policy: a new version (none when it is the current one), audited, and the
    re-scoring of its processed sessions from their stored signals queued. Sessions whose review is final keep
    their flags and are listed in `not_rescored` (an integrity officer reopens one to re-score it)."""
    try:
        safe_identifier("exam_id", exam_id)
    except InvalidIdentifier as invalid:
        raise IngestError(422, "validation_error", str(invalid), {"field": "exam_id"}) from None
    sent = body.model_dump(mode="json", exclude_none=True)
    try:
        policy = ExamPolicy.from_json(sent)
    except PolicyInvalid as invalid:
        raise IngestError(
            422, "policy_invalid", str(invalid), {"field": invalid.field, "allowed": invalid.allowed}
        ) from None
    with platform_api(request).db() as db:
        exam = _exam(db, tenant_id, exam_id)
        if exam is None:
            exam = Exam(tenant_id=tenant_id, external_id=exam_id, policy={})
            db.add(exam)
            db.flush()
        tenant = db.get(Tenant, tenant_id)
        actor = f"api:{tenant.slug if tenant else tenant_id}"
        ip = request.client.host if request.client else None
        applied = apply_policy(db, exam, policy, actor, utcnow(), ip=ip)
        db.commit()
        left = [SessionNotRescored(session_id=s.session_id, reason=s.why.value) for s in applied.not_rescored]
        return PolicyAppliedOut(
            **_out(db, exam), changed=applied.changed, rescore_queued=applied.queued, not_rescored=left
        )
