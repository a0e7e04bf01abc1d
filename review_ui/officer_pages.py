"""Integrity officers' pages: the audit trail (HTML and CSV), the tenants' note reasons, and reopening a final
review for an appeal (the exam reports are `review_ui.report_pages`). Each view and each step is audited."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import and_, or_, select

from core import audit
from core.audit_texts import readable_details
from core.db import utcnow
from core.tables import AuditEvent, Tenant, User, UserScope
from core.vocabulary import Role
from review_ui.accounts import SignedIn
from review_ui.decisions import ReviewRefused, reopen
from review_ui.http import DB, CheckedForm, Who, actor, client_ip, done, render, session_or_404
from review_ui.note_reasons import note_reasons, parse_note_reasons, set_note_reasons
from review_ui.reports import csv_document

SIGN_IN_ACTIONS = ("login", "login_failed", "logout")

router = APIRouter(prefix="/review", include_in_schema=False)


@router.get("/audit")
def audit_trail(
    request: Request,
    db: DB,
    who: Who,
    session: Annotated[str | None, Query()] = None,
    format: Annotated[str, Query(pattern="^(html|csv)$")] = "html",
) -> Response:
    require_officer(who, "the audit trail is")
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(500 if format == "html" else 100_000)
    if not who.scope.everything:
        # The tenant's own events, and the sign-ins of the people who work on it (they carry no tenant).
        staff = select(User.username).join(UserScope, UserScope.user_id == User.id)
        actors = [f"user:{name}" for name in db.scalars(staff.where(UserScope.tenant_id.in_(who.scope.tenant_ids)))]
        sign_ins = and_(
            AuditEvent.tenant_id.is_(None), AuditEvent.action.in_(SIGN_IN_ACTIONS), AuditEvent.actor.in_(actors)
        )
        stmt = stmt.where(or_(AuditEvent.tenant_id.in_(who.scope.tenant_ids), sign_ins))
    if session:
        stmt = stmt.where(AuditEvent.session_id == session)
    rows = list(db.scalars(stmt))
    details = readable_details(db, rows)  # notes in words, or erased (`core.audit_texts`)
    audit.record(
        db,
        f"user:{who.user.username}",
        "view_audit",
        at=utcnow(),
        ip=client_ip(request),
        session=session,
        format=format,
    )
    db.commit()
    if format == "csv":
        lines = []
        for e in rows:
            detail = json.dumps(details[e.id], sort_keys=True, default=str)  # JSON, so each cell parses back
            lines.append([e.id, e.at.isoformat(), e.actor, e.action, e.tenant_id, e.session_id, e.ip, detail])
        return Response(
            csv_document(["id", "at", "actor", "action", "tenant_id", "session_id", "ip", "detail"], lines),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    return render(request, "audit.html", who, rows=rows, details=details, session=session)


def require_officer(who: SignedIn, what: str) -> None:
    if who.user.role not in {Role.OFFICER, Role.ADMIN}:
        raise ReviewRefused(403, f"{what} for integrity officers and admins")


# -- appeals (integrity officers, admins) -----------------------------------------------------------------
@router.post("/sessions/{session_id}/reopen")
def reopen_for_appeal(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    """Reopen a final review with the appeal's reason: the session goes back to the review queue."""
    session = session_or_404(db, who, session_id)
    version = reopen(db, session, form.get("reason", ""), actor(who, request), utcnow())
    db.commit()
    return done(request, f"/review/sessions/{session_id}", reopened_version=version)


# -- note reasons (integrity officers, admins) ------------------------------------------------------------
@router.get("/note-reasons")
def note_reasons_page(request: Request, db: DB, who: Who) -> Response:
    require_officer(who, "note reasons are set")
    tenants = db.scalars(select(Tenant).where(who.scope.tenants_clause()).order_by(Tenant.slug)).all()
    return render(request, "note_reasons.html", who, tenants=[(t, note_reasons(t)) for t in tenants])


@router.post("/note-reasons/{tenant_id}")
def save_note_reasons(request: Request, tenant_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    require_officer(who, "note reasons are set")
    tenant = db.scalar(select(Tenant).where(Tenant.id == tenant_id, who.scope.tenants_clause()))
    if tenant is None:
        raise ReviewRefused(404, "no such platform")
    set_note_reasons(db, tenant, parse_note_reasons(form.get("reasons", "")), actor(who, request), utcnow())
    db.commit()
    return done(request, "/review/note-reasons")
