"""The instructor dashboard: an LMS's signed link signs a course team member into the review UI.

`GET /openedx/api/v1/instructor/{client_id}/?jwt=...` is where edx-proctoring's `get_instructor_url` sends a
course team member. A link that checks out (`openedx.instructor`) and was never used before signs them in as
`edx:<client id>:<email>`, a reviewer of the client's tenant with no password, in a browser session narrowed
to what the link names: the course's exams, one exam, or one attempt's session. The session cookie is the
login form's (`review_ui.sign_in`), and the sign-in is audited as a `login` with `via: openedx`. It lands on
the review queue, or on the attempt's session. Refusals are pages, since a person follows the link: 404 for
an unknown client, exam or attempt, 403 for a bad signature, 401 for an expired link, 409 for a link used
before (each `jti` is kept in `EdxTokenId` until it expires; expired ones are cleaned as links arrive).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.lms_tables import EdxAttempt, EdxClient, EdxExam, EdxTokenId
from core.secrets_box import SecretBox, SecretBoxError
from core.tables import Tenant
from core.vocabulary import Role
from openedx.clients import client_secret
from openedx.instructor import (
    InstructorToken,
    TokenRefused,
    instructor_username,
    verify_instructor_token,
)
from review_ui.accounts import assign, external_user, open_web_session, scope_of
from review_ui.http import DB, client_ip, render, review_app
from review_ui.sign_in import set_session_cookie

log = logging.getLogger(__name__)

router = APIRouter(prefix="/openedx/api/v1", include_in_schema=False)


@dataclass(frozen=True)
class DashboardConfig:
    """What the instructor dashboard reaches through `request.app.state.openedx_dashboard`."""

    secrets: SecretBox  # opens the EdxClients' secrets, which sign the links


@dataclass(frozen=True)
class Landing:
    """Where a checked link takes its browser, and what that browser may see."""

    url: str
    exam_ids: list[str]
    session_id: str | None


def mount_instructor_dashboard(app: FastAPI, secrets: SecretBox) -> None:
    """Add the instructor dashboard to an app that serves the review UI (`review_ui.web.mount_review`)."""
    app.state.openedx_dashboard = DashboardConfig(secrets)
    app.include_router(router)


@router.get("/instructor/{client_id}/", operation_id="edxInstructorDashboard")
def instructor_dashboard(request: Request, client_id: str, db: DB, jwt: str = "") -> Response:
    """Sign the link's course team member in, narrowed to what it names, and take them to the review UI."""
    config: DashboardConfig = request.app.state.openedx_dashboard
    now, ip = utcnow(), client_ip(request)
    try:
        client = db.scalar(select(EdxClient).where(EdxClient.client_id == client_id, EdxClient.revoked_at.is_(None)))
        if client is None:
            raise TokenRefused(
                404, "unknown_client", f"no Open edX client {client_id!r} here; check the LMS's settings"
            )
        try:
            secret = client_secret(config.secrets, client)
        except SecretBoxError as exc:
            raise TokenRefused(
                500, "secret_unavailable", f"client {client_id}'s secret cannot be opened: {exc}"
            ) from None
        token = verify_instructor_token(jwt, secret, client_id, now)
        spend_token_id(db, client, token, now)
        landing = landing_for(db, client, token)
        ttl = review_app(request).config.web_session_ttl
        session_token = sign_in(db, client, token, landing, now, ttl, ip)
    except TokenRefused as refused:
        db.rollback()
        log.info("instructor link refused", extra={"client": client_id, "code": refused.code, "ip": ip})
        return render(
            request, "problem.html", None, status_code=refused.status, message=str(refused), back="/review/queue"
        )
    response = RedirectResponse(landing.url, status_code=303)
    set_session_cookie(request, response, session_token)
    return response


def spend_token_id(db: Session, client: EdxClient, token: InstructorToken, now: datetime) -> None:
    """Keep the link's `jti` until it expires (a second use is refused, 409), and forget those expired."""
    db.execute(delete(EdxTokenId).where(EdxTokenId.expires_at <= now))
    db.add(EdxTokenId(jti=token.jti, client_pk=client.id, expires_at=token.expires_at))
    try:
        db.flush()
    except IntegrityError:
        raise TokenRefused(
            409, "already_used", "this link was already used: open the dashboard from the LMS again"
        ) from None


def landing_for(db: Session, client: EdxClient, token: InstructorToken) -> Landing:
    """What the link names, checked against this client's exams and attempts: the course, an exam of it, or an
    attempt of that exam (whose session must exist)."""
    exams = db.scalars(
        select(EdxExam).where(EdxExam.client_pk == client.id, EdxExam.course_id == token.course_id)
    ).all()
    if token.exam_id is None:
        return Landing("/review/queue", sorted({e.exam_id for e in exams}), None)
    exam = next((e for e in exams if e.id == token.exam_id), None)
    if exam is None:
        raise TokenRefused(404, "unknown_exam", f"course {token.course_id} has no proctored exam {token.exam_id} here")
    if token.attempt_id is None:
        return Landing(f"/review/queue?exam={exam.exam_id}", [exam.exam_id], None)
    attempt = db.get(EdxAttempt, token.attempt_id)
    if attempt is None or attempt.edx_exam_pk != exam.id:
        raise TokenRefused(404, "unknown_attempt", f"exam {exam.id} has no attempt {token.attempt_id} here")
    if attempt.session_id is None:
        raise TokenRefused(
            409, "no_recording", "this attempt has no recording yet: it appears once the learner's recorder starts"
        )
    return Landing(f"/review/sessions/{attempt.session_id}", [exam.exam_id], attempt.session_id)


def sign_in(
    db: Session,
    client: EdxClient,
    token: InstructorToken,
    landing: Landing,
    now: datetime,
    ttl: timedelta,
    ip: str | None,
) -> str:
    """Open the course team member's narrowed browser session (their user made on first use, a reviewer of the
    client's tenant), audit it and commit; returns the session token for the cookie."""
    user = external_user(db, instructor_username(client.client_id, token), Role.REVIEWER)
    if user.disabled_at is not None:
        raise TokenRefused(403, "account_disabled", "your review account is disabled; ask an administrator")
    if client.tenant_id not in scope_of(db, user).tenant_ids:
        tenant = db.get(Tenant, client.tenant_id)
        assert tenant is not None  # the client's foreign key
        assign(db, user, tenant.slug)
    session_token = open_web_session(
        db, user, now, ttl, only_exam_ids=landing.exam_ids, only_session_id=landing.session_id
    )
    audit.record(
        db, f"user:{user.username}", "login", at=now, tenant_id=client.tenant_id, session_id=landing.session_id,
        ip=ip, via="openedx", client=client.client_id, course_id=token.course_id, exam=token.exam_id,
        attempt=token.attempt_id,
    )  # fmt: skip
    db.commit()
    return session_token
