"""The instructor dashboard: links built exactly as edx-proctoring's `get_instructor_url` builds them sign a course
team member into the review UI, seeing only what the link names; bad, expired, replayed or foreign links do not.

Two courses of one edX client, each with a processed session (course 1 has two exams, exam A two sessions), in
the full `proctor serve` app over real HTTP; one check opens such a link in Debian's Chromium.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from core.context import AppContext
from core.lms_tables import EdxAttempt, EdxClient, EdxExam
from core.tables import AuditEvent, Exam, User, UserScope, WebSession
from core.tenants import add_tenant, issue_api_key
from openedx.clients import IssuedClient, add_client
from proctor.local_server import BackgroundServer
from proctor.samples import SampleSession, build_sample_session
from proctor.wiring import secrets, server_app
from review_ui.http import SESSION_COOKIE
from tests.review_ui.conftest import SAMPLE_S, World, add_processed_session

LMS_URL = "https://lms.example.org"
PROF = {"id": 42, "full_name": "Grace Hopper", "email": "grace@example.org"}
CHROMIUM = Path(os.environ.get("PROCTOR_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("edx-sample"), duration_s=SAMPLE_S, codec="vp8")


@dataclass
class Courses:
    """The live app, an edX client of its tenant, and the sessions of its courses' exams."""

    url: str
    context: AppContext
    client: IssuedClient
    exams: dict[str, str] = field(default_factory=dict)  # label -> EdxExam id (what edX holds)
    sessions: dict[str, str] = field(default_factory=dict)  # label -> session id
    attempt: str = ""  # an EdxAttempt of exam A, bound to session a1

    def link(self, course: str, *, secret: str | None = None, **claims: Any) -> str:
        """The URL `get_instructor_url(course_id, user, exam_id, attempt_id)` returns (edx-proctoring 6.1.4)."""
        exam_id, attempt_id = claims.pop("exam_id", None), claims.pop("attempt_id", None)
        token: dict[str, Any] = {
            "course_id": course,
            "user": PROF,
            "iss": self.client.client_id,
            "jti": uuid.uuid4().hex,
            "exp": time.time() + 60,
        }
        if exam_id:
            token["exam_id"] = exam_id
            if attempt_id:
                token["attempt_id"] = attempt_id
        token.update(claims)
        encoded = jwt.encode(token, secret or self.client.client_secret)  # pyjwt's default: HS256
        return f"{self.url}/openedx/api/v1/instructor/{self.client.client_id}/?jwt={encoded}"


@pytest.fixture
def courses(context: AppContext, sample: SampleSession) -> Iterator[Courses]:
    with BackgroundServer(server_app(context)) as url:
        with context.db() as db:
            tenant = add_tenant(db, f"edx-{uuid.uuid4().hex[:6]}", "an Open edX platform")
            key = issue_api_key(db, tenant)
            issued = add_client(db, secrets(context.settings), tenant, LMS_URL)
            db.commit()
            tenant_id = tenant.id
        world = World(url, context, keys={"t": key}, tenant_ids={"t": tenant_id})
        found = Courses(url, context, issued)
        placed = {"a1": "exam-a", "a2": "exam-a", "b1": "exam-b", "c1": "exam-c"}
        for label, exam in placed.items():
            found.sessions[label] = add_processed_session(world, "t", sample, exam=exam)
        with context.db() as db:
            for number, (exam, course) in enumerate(
                (
                    ("exam-a", "course-v1:Org+One+2026"),
                    ("exam-b", "course-v1:Org+One+2026"),
                    ("exam-c", "course-v1:Org+Two+2026"),
                )
            ):
                ours = db.scalar(select(Exam).where(Exam.tenant_id == tenant_id, Exam.external_id == exam))
                assert ours is not None
                edx_exam = EdxExam(client_pk=issued.row_id, lms_exam_id=number + 1, course_id=course, exam_id=ours.id)
                db.add(edx_exam)
                db.flush()
                found.exams[exam] = edx_exam.id
            attempt = EdxAttempt(edx_exam_pk=found.exams["exam-a"], user_id="learner", session_id=found.sessions["a1"])
            db.add(attempt)
            db.commit()
            found.attempt = attempt.id
        yield found


def visible(browser: httpx.Client, courses: Courses) -> set[str]:
    """The labels of the sessions the signed-in browser's queue lists."""
    page = browser.get("/review/queue")
    assert page.status_code == 200, page.text
    return {label for label, session_id in courses.sessions.items() if f"/review/sessions/{session_id}" in page.text}


def row(session_id: str) -> str:
    """A CSS selector of a queue row's link or claim button for the session."""
    return f"[href='/review/sessions/{session_id}'], [action='/review/sessions/{session_id}/claim']"


def follow(courses: Courses, link: str) -> tuple[httpx.Client, httpx.Response]:
    """Open the link in a fresh browser; returns the browser (with the cookie it was given) and the answer."""
    browser = httpx.Client(base_url=courses.url, follow_redirects=False, timeout=30)
    return browser, browser.get(link)


def test_a_course_link_signs_the_course_team_in_to_that_course_only(courses: Courses) -> None:
    browser, answer = follow(courses, courses.link("course-v1:Org+One+2026"))
    assert answer.status_code == 303 and answer.headers["location"] == "/review/queue"
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "httponly" in cookie and "samesite=lax" in cookie
    assert "path=/" in cookie
    assert visible(browser, courses) == {"a1", "a2", "b1"}
    assert browser.get(f"/review/sessions/{courses.sessions['c1']}").status_code == 404  # the other course
    assert browser.get(f"/review/sessions/{courses.sessions['b1']}").status_code == 200
    with courses.context.db() as db:
        user = db.scalar(select(User).where(User.username == f"edx:{courses.client.client_id}:grace@example.org"))
        assert user is not None and user.role == "reviewer"
        scopes = db.execute(select(UserScope.tenant_id, UserScope.exam_id).where(UserScope.user_id == user.id)).all()
        client = db.scalar(select(EdxClient).where(EdxClient.client_id == courses.client.client_id))
        assert client is not None and [tuple(row) for row in scopes] == [(client.tenant_id, None)]
        login = db.scalars(
            select(AuditEvent).where(AuditEvent.actor == f"user:{user.username}", AuditEvent.action == "login")
        ).one()
        assert login.detail["via"] == "openedx" and login.detail["course_id"] == "course-v1:Org+One+2026"
    # No password signs this user in through the form.
    form = httpx.Client(base_url=courses.url, follow_redirects=False, timeout=30)
    page = form.get("/review/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = form.post("/review/login", data={"username": user.username, "password": "!", "csrf_token": token})
    assert refused.status_code == 401


def test_an_exam_link_and_an_attempt_link_narrow_further(courses: Courses) -> None:
    course = "course-v1:Org+One+2026"
    exam_browser, answer = follow(courses, courses.link(course, exam_id=courses.exams["exam-a"]))
    assert answer.status_code == 303
    assert visible(exam_browser, courses) == {"a1", "a2"}
    assert exam_browser.get(f"/review/sessions/{courses.sessions['b1']}").status_code == 404

    attempt_link = courses.link(course, exam_id=courses.exams["exam-a"], attempt_id=courses.attempt)
    attempt_browser, answer = follow(courses, attempt_link)
    assert answer.status_code == 303 and answer.headers["location"] == f"/review/sessions/{courses.sessions['a1']}"
    assert attempt_browser.get(answer.headers["location"]).status_code == 200
    assert visible(attempt_browser, courses) == {"a1"}
    assert attempt_browser.get(f"/review/sessions/{courses.sessions['a2']}").status_code == 404
    # The same person's earlier browser keeps its own, wider, view: the narrowing is per browser session.
    assert visible(exam_browser, courses) == {"a1", "a2"}
    with courses.context.db() as db:
        narrowed = db.scalars(select(WebSession).where(WebSession.scope_session_id == courses.sessions["a1"])).one()
        assert narrowed.scope_exam_ids is not None and len(narrowed.scope_exam_ids) == 1


def test_an_exam_of_another_course_or_an_unknown_attempt_is_refused(courses: Courses) -> None:
    _, answer = follow(courses, courses.link("course-v1:Org+Two+2026", exam_id=courses.exams["exam-a"]))
    assert answer.status_code == 404 and SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    _, answer = follow(
        courses, courses.link("course-v1:Org+One+2026", exam_id=courses.exams["exam-b"], attempt_id=courses.attempt)
    )
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("case", "status", "says"),
    [
        ("wrong_secret", 403, "bad signature"),
        ("unsigned", 403, "bad signature"),
        ("expired", 401, "expired"),
        ("wrong_issuer", 403, "not issued by"),
        ("unknown_client", 404, "no Open edX client"),
    ],
)
def test_a_link_that_does_not_check_out_is_refused_with_a_page_that_says_why(
    courses: Courses, case: str, status: int, says: str
) -> None:
    course = "course-v1:Org+One+2026"
    if case == "wrong_secret":
        link = courses.link(course, secret="not-the-client-secret-but-long-enough-for-hs256")
    elif case == "unsigned":
        token = {
            "course_id": course,
            "user": PROF,
            "iss": courses.client.client_id,
            "jti": "x",
            "exp": time.time() + 60,
        }
        encoded = jwt.encode(token, "", algorithm="none")  # the classic forgery: no signature
        link = f"{courses.url}/openedx/api/v1/instructor/{courses.client.client_id}/?jwt={encoded}"
    elif case == "expired":
        link = courses.link(course, exp=time.time() - 5)
    elif case == "wrong_issuer":
        link = courses.link(course, iss="someone-else")
    else:
        link = courses.link(course).replace(f"/instructor/{courses.client.client_id}/", "/instructor/edx_nobody/")
    _, answer = follow(courses, link)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html") and says in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


def test_a_link_works_once(courses: Courses) -> None:
    link = courses.link("course-v1:Org+One+2026")
    _, first = follow(courses, link)
    assert first.status_code == 303
    _, again = follow(courses, link)
    assert again.status_code == 409 and "already used" in again.text
    assert SESSION_COOKIE not in again.headers.get("set-cookie", "")


def test_chromium_follows_a_course_link_into_the_queue_of_that_course(courses: Courses) -> None:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        reason = f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (make test does, as root)"
        if os.environ.get("CI"):
            raise RuntimeError(reason)
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # as tests/review_ui/test_browser.py says why
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--disable-gpu", "--disable-quic"]
        )
        try:
            page = browser.new_context().new_page()
            page.goto(courses.link("course-v1:Org+Two+2026"))
            expect(page).to_have_url(f"{courses.url}/review/queue")
            expect(page.locator(row(courses.sessions["c1"]))).to_have_count(1)
            for other in ("a1", "a2", "b1"):
                expect(page.locator(row(courses.sessions[other]))).to_have_count(0)
        finally:
            browser.close()
