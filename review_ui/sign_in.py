"""Signing in and out of the review UI: a login form with its own CSRF cookie, and an audited session cookie.

The form is the one page anyone can reach, and each password check costs 64 MiB of Argon2id, so every attempt
passes, in this order and before any hashing:
- the rate limits, per client address and per username, which answer 429 with `Retry-After`;
- the lockout, per (username, client address): after `max_failures` failures from one address that address
  is refused for that username until the oldest of them is `lockout` old. We throttle the guesser rather than
  lock the account, as Auth0's brute-force protection and django-axes (keyed on username and address) do: an
  account-wide lock lets anyone who knows a username lock its owner out, and with this one an attacker from
  another address cannot. Guessing spread over many addresses meets the per-username rate limit and, far
  later, the account-wide backstop that `review_ui.accounts` keeps atomically in the database;
- a bounded number of hash slots; an attempt that finds none free within a short wait gets 429 too.
Wrong passwords, unknown users and locked accounts get one answer (`REFUSED_MESSAGE`, 401), and an unknown user
costs one check against a dummy hash, inside a slot like any other. The limits hold no account data, so they
treat unknown and known usernames alike. The lockout and the limits are kept in memory, per process
(`review_ui.login_limits`); the account backstop is shared by every replica.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.tables import User
from review_ui.accounts import (
    LoginPolicy,
    LoginRefused,
    Passwords,
    authenticate,
    close_web_session,
    open_web_session,
    password_hasher,
)
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
    tokens_match,
)
from review_ui.login_limits import HashSlots, Limit, LoginLimits, NoHashSlot, Rate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginGate:
    """What stands between the login form and the password hasher: one per app, at `app.state.login_gate`."""

    limits: LoginLimits
    slots: HashSlots
    passwords: Passwords

    @classmethod
    def for_policy(
        cls, policy: LoginPolicy, passwords: Passwords | None = None, clock: Callable[[], float] = time.monotonic
    ) -> LoginGate:
        failures = Rate(policy.max_failures, policy.lockout.total_seconds())
        return cls(
            LoginLimits(policy.per_address, policy.per_username, failures, clock),
            HashSlots(policy.hash_slots, policy.hash_wait_s),
            passwords or Passwords.using(password_hasher()),
        )


router = APIRouter(prefix="/review", include_in_schema=False)


def login_gate(request: Request) -> LoginGate:
    gate: LoginGate = request.app.state.login_gate
    return gate


@router.get("/login")
def login_page(request: Request, next: str = "/review/queue") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, login_csrf=token, next=_local(next), error=None)
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600, samesite="strict")
    return response


@router.post("/login")
async def login(
    request: Request,
    db: DB,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/review/queue",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not tokens_match(csrf_token, expected):
        raise CsrfRejected()
    gate, ip = login_gate(request), client_ip(request)
    policy = review_app(request).config.login
    throttled = gate.limits.admit(ip or "", username)
    try:
        if throttled is None:
            async with gate.slots.held():
                user = await run_in_threadpool(authenticate, db, username, password, utcnow(), policy, gate.passwords)
        elif throttled.limit is Limit.FAILURES:
            raise LoginRefused("address_locked")
        else:
            return _too_many(request, expected, next, throttled.limit.value, throttled.retry_after_s)
    except NoHashSlot as busy:
        gate.limits.refund(ip or "", username)
        return _too_many(request, expected, next, "hash_slots", busy.retry_after_s)
    except LoginRefused as refused:
        await run_in_threadpool(_record, db, f"user:{username[:100]}", "login_failed", ip, reason=refused.reason)
        return render(
            request, "login.html", None, status_code=401, login_csrf=expected, next=_local(next), error=str(refused)
        )
    gate.limits.succeeded(ip or "", username)
    config = review_app(request).config
    token = await run_in_threadpool(_open_session, db, user, config.web_session_ttl, ip)
    response = RedirectResponse(_local(next), status_code=303)
    set_session_cookie(request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/review")
    return response


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """Hand the browser its session token: HttpOnly, SameSite=Lax, Secure as configured, for the session's TTL.
    Every way of signing in (this form, an LMS's instructor dashboard) sets it here."""
    max_age = int(review_app(request).config.web_session_ttl.total_seconds())
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=max_age, samesite="lax")


def _too_many(request: Request, login_csrf: str, next: str, limit: str, retry_after_s: int) -> Response:
    """429: the attempt was not tried. Logged, not audited, so that a flood costs no database writes."""
    log.info("login throttled", extra={"limit": limit, "ip": client_ip(request), "retry_after_s": retry_after_s})
    response = render(
        request,
        "login.html",
        None,
        status_code=429,
        login_csrf=login_csrf,
        next=_local(next),
        error=f"Too many sign-in attempts: try again in {retry_after_s} s.",
    )
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def _record(db: Session, actor: str, action: str, ip: str | None, **detail: str) -> None:
    audit.record(db, actor, action, at=utcnow(), ip=ip, **detail)
    db.commit()


def _open_session(db: Session, user: User, ttl: timedelta, ip: str | None) -> str:
    """Open the browser session of a user whose password was just accepted, and commit the sign-in."""
    now = utcnow()
    token = open_web_session(db, user, now, ttl)
    audit.record(db, f"user:{user.username}", "login", at=now, ip=ip)
    db.commit()
    return token


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
