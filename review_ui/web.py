"""The review UI as one mountable piece: its routers, static files and error pages.

Server-rendered pages (Jinja2, autoescaped) and a little plain JavaScript. Every route but the login page
needs a signed-in user; see `review_ui.http` for the shared plumbing and the page modules for the routes.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from core.rescoring import Rescorer
from review_ui import (
    bulk_actions,
    incident_report,
    officer_pages,
    policy_pages,
    report_pages,
    session_pages,
    sign_in,
)
from review_ui.decisions import ReviewRefused
from review_ui.http import (
    HERE,
    CsrfRejected,
    NotSignedIn,
    ReviewApp,
    ReviewConfig,
    refused_user,
    render,
    templates,
    wants_json,
)
from review_ui.refusal_audit import install_refusal_audit, note_refusal
from storage.object_store import ObjectStore

AUDITED_REFUSALS = {403: "forbidden", 404: "not_found"}
"""The review UI's refusals that go to the audit trail, with their code there: what the user may not do or see."""


def mount_review(
    app: FastAPI,
    db: sessionmaker[Session],
    store: ObjectStore,
    config: ReviewConfig,
    rescorer: Rescorer | None = None,
) -> None:
    """Add the review UI to an app (the `proctor serve` app also serves the platform API). `rescorer` previews
    policy changes (`review_ui.policy_pages`); without one, a preview answers 503."""
    app.state.review = ReviewApp(db=db, store=store, config=config, templates=templates())
    app.state.policy_rescorer = rescorer
    app.state.login_gate = sign_in.LoginGate.for_policy(config.login)
    install_refusal_audit(app, db)  # 403, 404 and CSRF refusals are audited by the handlers below
    for router in (
        sign_in.router,
        session_pages.router,
        bulk_actions.router,
        officer_pages.router,
        report_pages.router,
        policy_pages.router,
        incident_report.router,
    ):
        app.include_router(router)
    app.mount("/review/static", StaticFiles(directory=str(HERE / "static")), name="review-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/review/queue", status_code=303)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _error: NotSignedIn) -> Response:
        if request.method == "GET" and not wants_json(request):
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="/?=&")
            return RedirectResponse(f"/review/login?next={target}", status_code=303)
        return JSONResponse({"detail": "sign in first"}, status_code=401)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _error: CsrfRejected) -> Response:
        await note_refusal(request, 403, "csrf_rejected", user=refused_user(request))
        return _problem(request, "the form's CSRF token is missing or wrong; reload the page", 403)

    @app.exception_handler(ReviewRefused)
    async def _refused(request: Request, error: ReviewRefused) -> Response:
        if error.status in AUDITED_REFUSALS:
            await note_refusal(request, error.status, AUDITED_REFUSALS[error.status], user=refused_user(request))
        return _problem(request, str(error), error.status)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/review/static/favicon.svg", status_code=301)


def _problem(request: Request, message: str, status: int) -> Response:
    """A refusal: JSON for scripts, a page in the UI's frame (with a way back) for a person."""
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    referer = urlsplit(request.headers.get("referer", ""))
    same_site = referer.netloc == request.url.netloc and referer.path.startswith("/review/")
    back = referer.path if same_site else "/review/queue"
    return render(request, "problem.html", None, status_code=status, message=message, back=back)
