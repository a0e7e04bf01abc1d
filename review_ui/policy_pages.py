"""Integrity officers' policy pages: an exam's flagging policy (a form with the current values), the preview of a
change, applying it, and a candidate's accommodation. Officers and admins only, for exams in their scope; every
change is audited (`core.policy_changes`, `review_ui.policies`).

The preview needs the pipelines' re-scorer, which this package may not import: `mount_review` is handed one
(`proctor.wiring` builds it) and keeps it on the app. Applying queues the re-scoring as jobs for
`proctor worker`; the page shows how far they got.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.exam_policy import ExamPolicy, PolicyInvalid
from core.policy_changes import apply_policy, policy_history, stored_policy
from core.rescoring import Rescorer
from core.tables import Exam, Tenant
from core.vocabulary import FlagKind
from review_ui.accounts import SignedIn
from review_ui.decisions import ReviewRefused
from review_ui.http import DB, CheckedForm, Who, actor, client_ip, done, render, session_or_404, wants_json
from review_ui.officer_pages import require_officer
from review_ui.policies import (
    PREVIEW_SESSIONS,
    Preview,
    apply_status,
    form_values,
    kind_label,
    policy_from_form,
    preview,
    set_accommodation,
)

router = APIRouter(prefix="/review", include_in_schema=False)


def exam_or_404(db: Session, who: SignedIn, exam_id: str) -> Exam:
    """The exam, if this officer may set its policy: in their scope, and not through a sign-in narrowed to one
    session (an LMS course team member's)."""
    require_officer(who, "exam policies are")
    exam = db.scalar(select(Exam).where(Exam.id == exam_id, who.scope.exams_clause()))
    if exam is None or who.scope.only_session_ids is not None:
        raise ReviewRefused(404, "no such exam")
    return exam


def _page(
    request: Request,
    db: Session,
    who: SignedIn,
    exam: Exam,
    values: dict[str, str],
    *,
    status_code: int = 200,
    error: PolicyInvalid | None = None,
    previewed: Preview | None = None,
) -> Response:
    history = policy_history(db, exam.id)
    tenant = db.get(Tenant, exam.tenant_id)
    return render(
        request, "policy.html", who, status_code=status_code, exam=exam, tenant=tenant.slug if tenant else "",
        values=values, kinds=[k.value for k in FlagKind], kind_label=kind_label, error=error, preview=previewed,
        preview_max=PREVIEW_SESSIONS, history=history, valid=stored_policy(exam) is not None,
        status=apply_status(db, exam.id, history[0].changed_at if history else None),
    )  # fmt: skip


@router.get("/exams/{exam_id}/policy")
def policy_page(request: Request, exam_id: str, db: DB, who: Who) -> Response:
    exam = exam_or_404(db, who, exam_id)
    return _page(request, db, who, exam, form_values(stored_policy(exam) or ExamPolicy()))


def _refused(
    request: Request, db: Session, who: SignedIn, exam: Exam, form: dict[str, str], error: PolicyInvalid
) -> Response:
    if wants_json(request):
        raise ReviewRefused(422, str(error))
    return _page(request, db, who, exam, form, status_code=422, error=error)


@router.post("/exams/{exam_id}/policy/preview")
def preview_policy(request: Request, exam_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    """How many flags per kind the form's policy would add or remove, computed from the stored signals."""
    exam = exam_or_404(db, who, exam_id)
    rescorer: Rescorer | None = request.app.state.policy_rescorer
    if rescorer is None:
        raise ReviewRefused(503, "this server cannot preview: it was started without the re-scorer")
    try:
        proposed = policy_from_form(form, stored_policy(exam) or ExamPolicy())
    except PolicyInvalid as invalid:
        return _refused(request, db, who, exam, form, invalid)
    found = preview(db, exam.id, proposed, rescorer)
    if wants_json(request):
        return done(request, f"/review/exams/{exam.id}/policy", preview=_preview_json(found))
    return _page(request, db, who, exam, form_values(proposed), previewed=found)


@router.post("/exams/{exam_id}/policy")
def apply_exam_policy(request: Request, exam_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    """Make the form's policy the exam's and queue the re-scoring of its sessions that may be re-scored."""
    exam = exam_or_404(db, who, exam_id)
    try:
        proposed = policy_from_form(form, stored_policy(exam) or ExamPolicy())
    except PolicyInvalid as invalid:
        return _refused(request, db, who, exam, form, invalid)
    applied = apply_policy(db, exam, proposed, f"user:{who.user.username}", utcnow(), ip=client_ip(request))
    db.commit()
    return done(request, f"/review/exams/{exam.id}/policy", version=applied.version, queued=applied.queued)


@router.post("/sessions/{session_id}/accommodation")
def accommodation(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    """The attempt's accommodation: kinds not flagged for this candidate (`off.<kind>` = on) and a note."""
    require_officer(who, "accommodations are")
    session = session_or_404(db, who, session_id)
    kinds_off = [name.removeprefix("off.") for name, value in form.items() if name.startswith("off.") and value == "on"]
    try:
        queued = set_accommodation(db, session, kinds_off, form.get("note", ""), actor(who, request), utcnow())
    except PolicyInvalid as invalid:
        raise ReviewRefused(422, str(invalid)) from None
    db.commit()
    return done(request, f"/review/sessions/{session_id}", rescore_queued=queued)


def _preview_json(found: Preview) -> dict[str, Any]:
    return {
        "previewed": found.previewed,
        "eligible": found.eligible,
        "changed": found.changed,
        "kinds": [asdict(k) for k in found.kinds],
        "not_rescored": [{"session_id": s.session_id, "why": s.why.value} for s in found.left],
    }
