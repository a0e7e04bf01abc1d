"""Request plumbing shared by the review UI's pages: its config, the signed-in user, CSRF and rendering.

A thin layer: dependencies read the cookie and check the CSRF token, pages render Jinja2 templates
(autoescaped). Nothing here decides anything about a review; `decisions`, `queue` and `reports` do.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker

from core.db import utcnow
from core.tables import ExamSession
from core.vocabulary import Decision, FlagKind, Outcome
from review_ui.accounts import LoginPolicy, SignedIn, signed_in
from review_ui.decisions import Actor, ReviewRefused
from review_ui.queue import visible_session
from storage.object_store import ObjectStore

SESSION_COOKIE = "pp_session"
LOGIN_CSRF_COOKIE = "pp_login_csrf"
HERE = Path(__file__).parent

_Choice = TypeVar("_Choice", Decision, FlagKind, Outcome)


@dataclass(frozen=True)
class ReviewConfig:
    """The review UI's settings; `proctor.wiring` fills it from the settings object."""

    login: LoginPolicy
    web_session_ttl: timedelta
    claim_ttl: timedelta
    assignment_ttl: timedelta  # a claim an officer gives a reviewer (`review_ui.bulk_actions`)
    cookie_secure: bool


@dataclass(frozen=True)
class ReviewApp:
    """What the review UI's routes reach through `request.app.state.review`."""

    db: sessionmaker[Session]
    store: ObjectStore
    config: ReviewConfig
    templates: Jinja2Templates


class NotSignedIn(Exception):
    """No valid session cookie: pages redirect to the login page, other requests get 401."""


class CsrfRejected(Exception):
    """A form arrived without the session's CSRF token."""


def review_app(request: Request) -> ReviewApp:
    app: ReviewApp = request.app.state.review
    return app


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _db(request: Request) -> Iterator[Session]:
    with review_app(request).db() as db:
        yield db


DB = Annotated[Session, Depends(_db)]


def _signed_in(request: Request, db: DB) -> SignedIn:
    token = request.cookies.get(SESSION_COOKIE)
    who = signed_in(db, token, utcnow()) if token else None
    if who is None:
        raise NotSignedIn()
    request.state.who = who  # for a refusal's audit entry (`refused_user`)
    return who


def refused_user(request: Request) -> str | None:
    """The username of whoever a request was refused to, once signed in (None before: the login form's CSRF)."""
    who: SignedIn | None = getattr(request.state, "who", None)
    return who.user.username if who else None


Who = Annotated[SignedIn, Depends(_signed_in)]


async def _checked_form(request: Request, who: Who) -> dict[str, str]:
    """The posted form, once its CSRF token (field `csrf_token` or header `X-CSRF-Token`) matches."""
    form = await request.form()
    sent = request.headers.get("x-csrf-token") or str(form.get("csrf_token") or "")
    if not tokens_match(sent, who.csrf_token):
        raise CsrfRejected()
    return {k: str(v) for k, v in form.items()}


def tokens_match(sent: str, expected: str) -> bool:
    """A constant-time comparison of a CSRF token as sent (any text: `compare_digest` refuses non-ASCII `str`)."""
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


CheckedForm = Annotated[dict[str, str], Depends(_checked_form)]


def templates() -> Jinja2Templates:
    built = Jinja2Templates(directory=str(HERE / "templates"))
    built.env.globals["flag_kinds"] = [k.value for k in FlagKind]
    built.env.globals["outcomes"] = [o.value for o in Outcome]
    return built


def render(request: Request, name: str, who: SignedIn | None, status_code: int = 200, **values: Any) -> HTMLResponse:
    response = review_app(request).templates.TemplateResponse(
        request, name, {"who": who, **values}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def session_or_404(db: Session, who: SignedIn, session_id: str) -> ExamSession:
    session = visible_session(db, who.scope, session_id)
    if session is None:
        raise ReviewRefused(404, "no such session")
    return session


def actor(who: SignedIn, request: Request) -> Actor:
    return Actor(who.user, client_ip(request))


def done(request: Request, url: str, **payload: Any) -> Response:
    if wants_json(request):
        return JSONResponse({"ok": True, "next": url, **payload})
    return RedirectResponse(url, status_code=303)


def ticked(form: dict[str, str], field: str) -> bool:
    """A checkbox: a browser sends `on` when it is ticked and nothing when not; scripts may send `true` or `1`."""
    return form.get(field, "").strip().lower() in {"on", "true", "1"}


def parse_choice(kind: type[_Choice], value: str, field: str) -> _Choice:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(v.value) for v in kind)
        raise ReviewRefused(422, f"{field} must be one of {allowed}") from None
