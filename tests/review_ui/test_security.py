"""Security of the review UI: no way in without signing in, CSRF on every form, tenants sealed off, URLs expire."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select

from core.tables import ExamSession, FlagSegment
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from tests.review_ui.conftest import Browser, World


def routes(world: World) -> tuple[list[str], list[str]]:
    """Every page and every form target of the review UI, filled with real ids of tenant A."""
    session_id = world.sessions["a"]
    with world.context.db() as db:
        flag = db.scalars(select(FlagSegment.id).where(FlagSegment.session_id == session_id)).first()
        exam = db.scalars(select(ExamSession.exam_id).where(ExamSession.id == session_id)).one()
    base = f"/review/sessions/{session_id}"
    pages = [
        "/review",
        "/review/queue",
        "/review/audit",
        "/review/reports",
        base,
        f"{base}/media/webcam",
        f"{base}/evidence/{flag}/0",
        f"/review/reports/{exam}",
        f"/review/reports/{exam}?format=csv",
        f"/review/reports/{exam}/metrics/outcomes.csv",
    ]
    forms = [
        "/review/logout",
        f"{base}/claim",
        f"{base}/release",
        f"{base}/flags/{flag}/decision",
        f"{base}/flags",
        f"{base}/outcome",
        f"{base}/second-review",
    ]
    return pages, forms


def test_every_page_and_form_refuses_an_anonymous_visitor(world: World) -> None:
    pages, forms = routes(world)
    with httpx.Client(base_url=world.url, follow_redirects=False) as anonymous:
        for path in pages:
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/review/login?next="), path
            assert anonymous.get(path, headers={"Accept": "application/json"}).status_code == 401, path
        for path in [*forms, "/review/queue/bulk"]:
            assert anonymous.post(path, data={"decision": "confirmed"}).status_code == 401, path
        # A forged cookie is no better than none.
        anonymous.cookies.set("pp_session", "forged-token")
        assert anonymous.get("/review/queue").status_code == 303
        # The platform API wants its API key.
        assert anonymous.get(f"/v1/sessions/{world.sessions['a']}/review").status_code == 401


def test_every_form_enforces_csrf(world: World) -> None:
    _, forms = routes(world)
    reviewer = world.browser("reviewer_a")
    reviewer.page("/review/queue")
    for path in forms:
        assert reviewer.post(path, data={}).status_code == 403, path
        assert reviewer.post(path, data={"csrf_token": "not-the-token"}).status_code == 403, path
    # Nothing happened: the session is not claimed and the reviewer is still signed in.
    assert reviewer.get("/review/queue").status_code == 200
    assert "claimed by" not in reviewer.page("/review/queue").text
    # The login form has its own token, bound to a cookie.
    fresh = httpx.Client(base_url=world.url)
    refused = fresh.post(
        "/review/login", data={"username": world.users["reviewer_a"], "password": "x", "csrf_token": "guess"}
    )
    assert refused.status_code == 403


def test_another_tenants_session_recording_and_evidence_are_invisible(world: World) -> None:
    pages, forms = routes(world)  # all of them name tenant A's session, flag and evidence
    outsider = world.browser("reviewer_b")
    outsider.page("/review/queue")
    for path in pages[4:]:
        # A reviewer is refused reports before any lookup; test_reports covers officers of another tenant.
        expected = 403 if path.startswith("/review/reports/") else 404
        assert outsider.get(path).status_code == expected, path
    for path in forms[1:]:
        assert outsider.submit(path, decision="confirmed", outcome="Clean", kind="no_face").status_code == 404, path
    # Tenant B's own evidence path with tenant A's flag id: still nothing.
    with world.context.db() as db:
        flag_a = db.scalars(select(FlagSegment.id).where(FlagSegment.session_id == world.sessions["a"])).first()
    assert outsider.get(f"/review/sessions/{world.sessions['b']}/evidence/{flag_a}/0").status_code == 404
    assert world.sessions["a"] not in outsider.page("/review/queue").text
    # And a platform's API key does not open another platform's review either.
    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['b']}"}) as platform_b:
        assert platform_b.get(f"/v1/sessions/{world.sessions['a']}/review").status_code == 404


def test_presigned_evidence_urls_work_then_expire(world: World) -> None:
    short_lived = replace(world.context, settings=world.context.settings.model_copy(update={"presigned_url_ttl_s": 2}))
    with (
        BackgroundServer(server_app(short_lived)) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {world.keys['a']}"}) as platform,
    ):
        review = platform.get(f"/v1/sessions/{world.sessions['a']}/review").json()
    url = review["flags"][0]["evidence_urls"][0]
    fresh = httpx.get(url)
    assert fresh.status_code == 200 and fresh.content[:2] == b"\xff\xd8"  # a JPEG
    time.sleep(3.5)
    assert httpx.get(url).status_code == 403


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/v1/sessions"])
def test_login_never_redirects_off_the_review_ui(world: World, target: str) -> None:
    browser = Browser(world.url)
    browser.page(f"/review/login?next={target}")
    response = browser.post(
        "/review/login",
        data={"username": world.users["reviewer_a"], "password": "correct horse battery", "csrf_token": browser.csrf,
              "next": target},
    )  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == "/review/queue"
