"""Signing in and out of the review UI: a login form with its own CSRF cookie, and an audited session cookie."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from core import audit
from core.db import utcnow
from review_ui.accounts import LoginRefused, authenticate, close_web_session, open_web_session
from review_ui.http import (
    DB,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CheckedForm,
    CsrfRejected,
    Who,
    client_ip,
    render,
    review_app,
)

router = APIRouter(prefix="/review", include_in_schema=False)


@router.get("/login")
def login_page(request: Request, next: str = "/review/queue") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, login_csrf=token, next=_local(next), error=None)
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
    config = review_app(request).config
    now = utcnow()
    try:
        user = authenticate(db, username, password, now, config.login)
    except LoginRefused as refused:
        audit.record(db, f"user:{username[:100]}", "login_failed", at=now, ip=client_ip(request), reason=str(refused))
        db.commit()
        return render(
            request, "login.html", None, status_code=401, login_csrf=expected, next=_local(next), error=str(refused)
        )
    token = open_web_session(db, user, now, config.web_session_ttl)
    audit.record(db, f"user:{user.username}", "login", at=now, ip=client_ip(request))
    db.commit()
    response = RedirectResponse(_local(next), status_code=303)
    _set_cookie(
        request, response, SESSION_COOKIE, token, max_age=int(config.web_session_ttl.total_seconds()), samesite="lax"
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/review")
    return response


@router.post("/logout")
def logout(request: Request, db: DB, who: Who, _form: CheckedForm) -> Response:
    close_web_session(db, request.cookies.get(SESSION_COOKIE, ""))
    audit.record(db, f"user:{who.user.username}", "logout", at=utcnow(), ip=client_ip(request))
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
        secure=review_app(request).config.cookie_secure,
        path="/" if name == SESSION_COOKIE else "/review",
    )
