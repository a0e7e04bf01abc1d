"""The review UI over HTTP: server-rendered pages (Jinja2, autoescaped) and a little plain JavaScript.

A thin layer: it reads the cookie, checks CSRF, calls `queue` and `decisions`, and renders. Every route but
the login page needs a signed-in user; every session, recording and evidence lookup goes through the
user's scope, so another tenant's ids answer 404 exactly like ids that do not exist. Recordings are
proxied from object storage with HTTP Range, and every such access is written to the audit trail.
"""

from __future__ import annotations

import csv
import hmac
import html
import io
import re
import secrets
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from ingest import audit
from ingest.context import IngestContext
from ingest.db import AuditEvent, ExamSession, FlagSegment, utcnow
from ingest.object_store import ObjectNotFound
from pipelines.segments import FlagKind
from review_ui.accounts import (
    LoginPolicy,
    LoginRefused,
    Role,
    SignedIn,
    authenticate,
    close_web_session,
    open_web_session,
    signed_in,
)
from review_ui.decisions import (
    Actor,
    Decision,
    Outcome,
    ReviewRefused,
    add_flag,
    claim,
    decide_flag,
    release,
    second_review,
    set_outcome,
)
from review_ui.platform_api import router as platform_router
from review_ui.queue import QueueFilter, QueueStatus, queue_page, session_view, visible_session
from review_ui.reports import exam_report, exam_summaries, report_csv

SESSION_COOKIE = "pp_session"
LOGIN_CSRF_COOKIE = "pp_login_csrf"
HERE = Path(__file__).parent
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
STREAM_CHUNK = 1024 * 1024
REPORT_PAGE_SESSIONS = 500
"""Session lines an exam report shows on its page; the CSV export has them all."""


_Choice = TypeVar("_Choice", Decision, FlagKind, Outcome)


class NotSignedIn(Exception):
    """No valid session cookie: pages redirect to the login page, other requests get 401."""


class CsrfRejected(Exception):
    """A form arrived without the session's CSRF token."""


def _context(request: Request) -> IngestContext:
    context: IngestContext = request.app.state.ingest
    return context


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _db(request: Request) -> Iterator[Session]:
    with _context(request).db() as db:
        yield db


DB = Annotated[Session, Depends(_db)]


def _signed_in(request: Request, db: DB) -> SignedIn:
    token = request.cookies.get(SESSION_COOKIE)
    who = signed_in(db, token, utcnow()) if token else None
    if who is None:
        raise NotSignedIn()
    return who


Who = Annotated[SignedIn, Depends(_signed_in)]


async def _checked_form(request: Request, who: Who) -> dict[str, str]:
    """The posted form, once its CSRF token (field `csrf_token` or header `X-CSRF-Token`) matches."""
    form = await request.form()
    sent = request.headers.get("x-csrf-token") or str(form.get("csrf_token") or "")
    if not sent or not hmac.compare_digest(sent, who.csrf_token):
        raise CsrfRejected()
    return {k: str(v) for k, v in form.items()}


CheckedForm = Annotated[dict[str, str], Depends(_checked_form)]


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["flag_kinds"] = [k.value for k in FlagKind]
    templates.env.globals["outcomes"] = [o.value for o in Outcome]
    return templates


router = APIRouter(prefix="/review", include_in_schema=False)


def _page(request: Request, name: str, who: SignedIn | None, status_code: int = 200, **values: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.review_templates
    response = templates.TemplateResponse(request, name, {"who": who, **values}, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _session_or_404(db: Session, who: SignedIn, session_id: str) -> ExamSession:
    session = visible_session(db, who.scope, session_id)
    if session is None:
        raise ReviewRefused(404, "no such session")
    return session


def _actor(who: SignedIn, request: Request) -> Actor:
    return Actor(who.user, _ip(request))


def _done(request: Request, url: str, **payload: Any) -> Response:
    if _wants_json(request):
        return JSONResponse({"ok": True, **payload})
    return RedirectResponse(url, status_code=303)


# -- sign in / out ------------------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str = "/review/queue") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = _page(request, "login.html", None, login_csrf=token, next=_local(next), error=None)
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600, samesite="strict")
    return response


@router.post("/login")
def login(
    request: Request,
    db: DB,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/review/queue",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        raise CsrfRejected()
    settings = _context(request).settings
    policy = LoginPolicy(settings.login_max_failures, timedelta(seconds=settings.login_lockout_s))
    now = utcnow()
    try:
        user = authenticate(db, username, password, now, policy)
    except LoginRefused as refused:
        audit.record(db, f"user:{username[:100]}", "login_failed", at=now, ip=_ip(request), reason=str(refused))
        db.commit()
        return _page(
            request, "login.html", None, status_code=401, login_csrf=expected, next=_local(next), error=str(refused)
        )
    token = open_web_session(db, user, now, timedelta(seconds=settings.web_session_ttl_s))
    audit.record(db, f"user:{user.username}", "login", at=now, ip=_ip(request))
    db.commit()
    response = RedirectResponse(_local(next), status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=settings.web_session_ttl_s, samesite="lax")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/review")
    return response


@router.post("/logout")
def logout(request: Request, db: DB, who: Who, _form: CheckedForm) -> Response:
    close_web_session(db, request.cookies.get(SESSION_COOKIE, ""))
    audit.record(db, f"user:{who.user.username}", "logout", at=utcnow(), ip=_ip(request))
    db.commit()
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _local(url: str) -> str:
    """Only same-site paths are followed after login (no open redirect)."""
    return url if url.startswith("/review/") and not url.startswith("//") else "/review/queue"


def _set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int, samesite: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite=samesite,  # type: ignore[arg-type]
        secure=_context(request).settings.cookie_secure,
        path="/" if name == SESSION_COOKIE else "/review",
    )


# -- queue ----------------------------------------------------------------------------------------------
@router.get("")
def home(who: Who) -> RedirectResponse:
    return RedirectResponse("/review/queue", status_code=303)


@router.get("/queue")
def queue(
    request: Request,
    db: DB,
    who: Who,
    status: QueueStatus = QueueStatus.TO_REVIEW,
    exam: Annotated[str | None, Query()] = None,
    kind: Annotated[FlagKind | None, Query()] = None,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    query = QueueFilter(status, exam or None, kind.value if kind else None, since, until, page)
    result = queue_page(db, who.scope, query, utcnow())
    return _page(request, "queue.html", who, result=result, query=query, statuses=list(QueueStatus))


@router.post("/sessions/{session_id}/claim")
def claim_session(request: Request, session_id: str, db: DB, who: Who, _form: CheckedForm) -> Response:
    session = _session_or_404(db, who, session_id)
    ttl = timedelta(seconds=_context(request).settings.review_claim_ttl_s)
    claim(db, session, _actor(who, request), utcnow(), ttl)
    db.commit()
    return _done(request, f"/review/sessions/{session_id}")


@router.post("/sessions/{session_id}/release")
def release_session(request: Request, session_id: str, db: DB, who: Who, _form: CheckedForm) -> Response:
    session = _session_or_404(db, who, session_id)
    release(db, session, _actor(who, request), utcnow())
    db.commit()
    return _done(request, "/review/queue")


# -- one session ----------------------------------------------------------------------------------------
@router.get("/sessions/{session_id}")
def session_page(request: Request, session_id: str, db: DB, who: Who) -> HTMLResponse:
    session = _session_or_404(db, who, session_id)
    view = session_view(db, session, utcnow())
    audit.record(
        db, f"user:{who.user.username}", "view_session", at=utcnow(), tenant_id=session.tenant_id,
        session_id=session.id, ip=_ip(request),
    )  # fmt: skip
    db.commit()
    events = _context(request).uploads.events(session.tenant_id, session.id) if "events" in view.media else []
    mine = view.claimed_by == who.user.username
    return _page(request, "session.html", who, view=view, events=events, mine=mine)


@router.get("/sessions/{session_id}/media/{kind}")
def recording(request: Request, session_id: str, kind: str, db: DB, who: Who) -> Response:
    """The webcam or screen recording, proxied from object storage with HTTP Range (seeking works)."""
    session = _session_or_404(db, who, session_id)
    media = next((m for m in session.media if m.kind == kind and kind != "events" and m.state == "complete"), None)
    if media is None:
        raise ReviewRefused(404, "no such recording")
    store = _context(request).store
    info = store.stat(media.object_key)
    if info is None:
        raise ReviewRefused(404, "the recording is no longer stored")
    start, end = 0, info.size - 1
    partial = False
    header = request.headers.get("range")
    if header:
        match = _RANGE.match(header.strip())
        if match is None or (not match[1] and not match[2]):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{info.size}"})
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), info.size - 1) if match[2] else info.size - 1
        else:  # suffix range: the last N bytes
            start = max(0, info.size - int(match[2]))
        if start > end or start >= info.size:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{info.size}"})
        partial = True
    audit.record(
        db, f"user:{who.user.username}", "view_recording", at=utcnow(), tenant_id=session.tenant_id,
        session_id=session.id, ip=_ip(request), media=kind, range=f"{start}-{end}",
    )  # fmt: skip
    db.commit()

    def body() -> Iterator[bytes]:
        offset = start
        while offset <= end:
            chunk = store.read_range(media.object_key, offset, min(STREAM_CHUNK, end - offset + 1))
            if not chunk:
                return
            yield chunk
            offset += len(chunk)

    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start + 1),
        "Cache-Control": "private, no-store",
    }
    if partial:
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    return StreamingResponse(
        body(), status_code=206 if partial else 200, media_type=media.content_type, headers=headers
    )


@router.get("/sessions/{session_id}/evidence/{flag_id}/{index}")
def evidence(request: Request, session_id: str, flag_id: str, index: int, db: DB, who: Who) -> Response:
    session = _session_or_404(db, who, session_id)
    segment = db.get(FlagSegment, flag_id)
    if segment is None or segment.session_id != session.id or not 0 <= index < len(segment.evidence_keys):
        raise ReviewRefused(404, "no such evidence")
    try:
        jpeg = b"".join(_context(request).store.iter_chunks(segment.evidence_keys[index]))
    except ObjectNotFound:
        raise ReviewRefused(404, "the evidence frame is no longer stored") from None
    audit.record(
        db, f"user:{who.user.username}", "view_evidence", at=utcnow(), tenant_id=session.tenant_id,
        session_id=session.id, ip=_ip(request), flag=flag_id,
    )  # fmt: skip
    db.commit()
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/sessions/{session_id}/flags/{flag_id}/decision")
def flag_decision(request: Request, session_id: str, flag_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    session = _session_or_404(db, who, session_id)
    decision = _parse(Decision, form.get("decision", ""), "decision")
    decide_flag(db, session, flag_id, decision, form.get("note", ""), _actor(who, request), utcnow())
    db.commit()
    return _done(request, f"/review/sessions/{session_id}", flag=flag_id, decision=decision.value)


@router.post("/sessions/{session_id}/flags")
def add_missed_flag(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    session = _session_or_404(db, who, session_id)
    kind = _parse(FlagKind, form.get("kind", ""), "kind")
    try:
        start_s, end_s = float(form.get("start_s", "")), float(form.get("end_s", ""))
    except ValueError:
        raise ReviewRefused(422, "start and end must be numbers of seconds") from None
    segment = add_flag(db, session, kind, start_s, end_s, form.get("note", ""), _actor(who, request), utcnow())
    db.commit()
    return _done(request, f"/review/sessions/{session_id}", flag=segment.id)


@router.post("/sessions/{session_id}/outcome")
def outcome(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    session = _session_or_404(db, who, session_id)
    chosen = _parse(Outcome, form.get("outcome", ""), "outcome")
    status = set_outcome(db, session, chosen, form.get("note", ""), _actor(who, request), utcnow())
    db.commit()
    return _done(request, "/review/queue", status=status)


@router.post("/sessions/{session_id}/second-review")
def confirm_second(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    session = _session_or_404(db, who, session_id)
    verdict = form.get("verdict", "")
    if verdict not in {"confirm", "return"}:
        raise ReviewRefused(422, "verdict must be 'confirm' or 'return'")
    status = second_review(db, session, verdict == "confirm", form.get("note", ""), _actor(who, request), utcnow())
    db.commit()
    return _done(request, "/review/queue", status=status)


def _parse(kind: type[_Choice], value: str, field: str) -> _Choice:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(v.value) for v in kind)
        raise ReviewRefused(422, f"{field} must be one of {allowed}") from None


# -- audit (integrity officers, admins) -------------------------------------------------------------------
@router.get("/audit")
def audit_trail(
    request: Request,
    db: DB,
    who: Who,
    session: Annotated[str | None, Query()] = None,
    format: Annotated[str, Query(pattern="^(html|csv)$")] = "html",
) -> Response:
    _officer(who, "the audit trail is")
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(500 if format == "html" else 100_000)
    if not who.scope.everything:
        stmt = stmt.where(AuditEvent.tenant_id.in_(who.scope.tenant_ids))
    if session:
        stmt = stmt.where(AuditEvent.session_id == session)
    rows = list(db.scalars(stmt))
    audit.record(
        db, f"user:{who.user.username}", "view_audit", at=utcnow(), ip=_ip(request), session=session, format=format
    )
    db.commit()
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "at", "actor", "action", "tenant_id", "session_id", "ip", "detail"])
        for e in rows:
            writer.writerow([e.id, e.at.isoformat(), e.actor, e.action, e.tenant_id, e.session_id, e.ip, e.detail])
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    return _page(request, "audit.html", who, rows=rows, session=session)


def _officer(who: SignedIn, what: str) -> None:
    if who.user.role not in {Role.OFFICER, Role.ADMIN}:
        raise ReviewRefused(403, f"{what} for integrity officers and admins")


# -- reports (integrity officers, admins) -----------------------------------------------------------------
@router.get("/reports")
def reports(request: Request, db: DB, who: Who) -> Response:
    _officer(who, "reports are")
    exams = exam_summaries(db, who.scope)
    audit.record(db, f"user:{who.user.username}", "view_reports", at=utcnow(), ip=_ip(request))
    db.commit()
    return _page(request, "reports.html", who, exams=exams)


@router.get("/reports/{exam_id}")
def exam_report_page(
    request: Request,
    db: DB,
    who: Who,
    exam_id: str,
    format: Annotated[str, Query(pattern="^(html|csv)$")] = "html",
) -> Response:
    _officer(who, "reports are")
    report = exam_report(db, who.scope, exam_id, max_sessions=None if format == "csv" else REPORT_PAGE_SESSIONS)
    if report is None:
        raise ReviewRefused(404, "no such exam")
    audit.record(
        db,
        f"user:{who.user.username}",
        "view_report",
        at=utcnow(),
        tenant_id=report.tenant_id,
        ip=_ip(request),
        exam_id=report.exam_id,
        format=format,
        sessions=len(report.sessions),
    )
    db.commit()
    if format == "csv":
        filename = f"report-{report.tenant}-{report.external_id}.csv"
        return Response(
            report_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
        )
    return _page(request, "report.html", who, report=report, shown_max=REPORT_PAGE_SESSIONS)


def mount_review(app: FastAPI) -> None:
    """Add the review UI to the API app (it shares the app's `IngestContext`)."""
    app.state.review_templates = _templates()
    app.include_router(router)
    app.include_router(platform_router)
    app.mount("/review/static", StaticFiles(directory=str(HERE / "static")), name="review-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/review/queue", status_code=303)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _error: NotSignedIn) -> Response:
        if request.method == "GET" and not _wants_json(request):
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="/?=&")
            return RedirectResponse(f"/review/login?next={target}", status_code=303)
        return JSONResponse({"detail": "sign in first"}, status_code=401)

    @app.exception_handler(CsrfRejected)
    async def _csrf(_request: Request, _error: CsrfRejected) -> Response:
        return JSONResponse({"detail": "the form's CSRF token is missing or wrong; reload the page"}, status_code=403)

    @app.exception_handler(ReviewRefused)
    async def _refused(request: Request, error: ReviewRefused) -> Response:
        if _wants_json(request) or request.method != "GET":
            return JSONResponse({"detail": str(error)}, status_code=error.status)
        return HTMLResponse(f"<p>{html.escape(str(error))}</p>", status_code=error.status)
