"""The system check's routes over real HTTP: `/v1/sessions/{id}/system-check` (upload token or tenant key) and
`/openedx/recorder/{attempt}/system-check` (the attempt id is the capability), and the recorder's page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from core.context import AppContext
from core.tenants import add_tenant, issue_api_key
from ingest.system_check import MAX_JPEG_BYTES
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from tests.recorder.conftest import SampleFrames, edx_attempt, jpeg
from tests.support.platform import STARTED, problem


@pytest.fixture
def url(context: AppContext) -> Iterator[str]:
    with BackgroundServer(server_app(context)) as served:
        yield served


def new_session(url: str, context: AppContext) -> tuple[str, str, str]:
    """A streaming session of a new tenant: (session id, tenant key, upload token)."""
    with context.db() as db:
        tenant = add_tenant(db, f"sc-{uuid.uuid4().hex[:8]}", "system check test")
        key = issue_api_key(db, tenant)
        db.commit()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        body = {
            "exam_id": "exam-sc",
            "candidate_id": "cand-sc",
            "attempt_id": uuid.uuid4().hex[:8],
            "started_at": STARTED,
            "media": [{"kind": "webcam", "content_type": "video/webm", "streaming": True}],
        }
        created = http.post("/v1/sessions", json=body)
        assert created.status_code == 201, created.text
        session_id: str = created.json()["id"]
        token: str = http.post(f"/v1/sessions/{session_id}/upload-tokens").json()["token"]
    return session_id, key, token


def check(
    url: str, path: str, data: bytes, token: str | None = None, content_type: str = "image/jpeg"
) -> httpx.Response:
    headers = {"Content-Type": content_type} | ({"Authorization": f"Bearer {token}"} if token else {})
    return httpx.post(url + path, content=data, headers=headers, timeout=60)


def test_the_session_route_takes_the_upload_token_or_the_tenant_key(
    url: str, context: AppContext, sample_frames: SampleFrames
) -> None:
    session_id, key, token = new_session(url, context)
    _, other_key, other_token = new_session(url, context)
    path = f"/v1/sessions/{session_id}/system-check"
    face, cup = jpeg(sample_frames.middle("candidate")), jpeg(sample_frames.middle("cup"))

    passed = check(url, path, face, token)
    assert passed.status_code == 200 and passed.json()["ok"] is True
    refused = check(url, path, cup, key).json()
    assert refused["ok"] is False and refused["problems"][0]["code"] == "no_face"

    assert problem(check(url, path, face)) == (401, "unauthorized")
    assert problem(check(url, path, face, other_token)) == (403, "upload_token_wrong_session")
    assert problem(check(url, path, face, other_key)) == (404, "session_not_found")
    assert problem(check(url, path, face, token, content_type="image/png")) == (415, "unsupported_media_type")
    assert problem(check(url, path, b"", token)) == (422, "empty_frame")
    assert problem(check(url, path, bytes(MAX_JPEG_BYTES + 1), token)) == (413, "body_too_large")


@pytest.mark.parametrize("status", ["created", "started"])
def test_an_open_edx_attempt_is_checked_by_its_id(
    url: str, context: AppContext, sample_frames: SampleFrames, status: str
) -> None:
    attempt = edx_attempt(context, status)
    answer = check(url, f"/openedx/recorder/{attempt}/system-check", jpeg(sample_frames.middle("two people")))
    assert answer.status_code == 200
    assert [p["code"] for p in answer.json()["problems"]] == ["multiple_faces"]


def test_an_ended_or_unknown_attempt_is_refused(url: str, context: AppContext, sample_frames: SampleFrames) -> None:
    face = jpeg(sample_frames.middle("candidate"))
    ended = edx_attempt(context, "submitted")
    assert problem(check(url, f"/openedx/recorder/{ended}/system-check", face)) == (409, "edx_attempt_state")
    assert problem(check(url, "/openedx/recorder/nope/system-check", face)) == (404, "edx_attempt_not_found")


def test_the_page_and_its_modules_are_served_under_the_app_policy(url: str) -> None:
    page = httpx.get(f"{url}/recorder/?session=abc")
    assert page.status_code == 200 and 'src="/recorder/static/page.js"' in page.text
    assert "<script>" not in page.text and "style=" not in page.text  # the policy forbids inline code
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self' covers the modules
    moved = httpx.get(f"{url}/recorder?attempt=a1")
    assert moved.status_code == 308 and moved.headers["location"] == "/recorder/?attempt=a1"
    for name in ("recorder.js", "upload.js", "store.js", "sha256.js", "page.js", "edx-handler.js"):
        module = httpx.get(f"{url}/recorder/static/{name}")
        assert module.status_code == 200 and "javascript" in module.headers["content-type"], name


def test_every_refusal_of_the_edx_check_is_in_the_served_document(
    url: str, context: AppContext, sample_frames: SampleFrames
) -> None:
    """A generated edX-side client knows each answer: the statuses the route really sends are the documented ones."""
    face, live = jpeg(sample_frames.middle("candidate")), edx_attempt(context, "started")
    path = f"/openedx/recorder/{live}/system-check"
    sent = {
        check(url, f"/openedx/recorder/{edx_attempt(context, 'submitted')}/system-check", face).status_code,
        check(url, "/openedx/recorder/nope/system-check", face).status_code,
        check(url, path, face, content_type="image/png").status_code,
        check(url, path, b"").status_code,
        check(url, path, bytes(MAX_JPEG_BYTES + 1)).status_code,
    }
    document = httpx.get(f"{url}/openapi.json").json()
    declared = document["paths"]["/openedx/recorder/{attempt}/system-check"]["post"]["responses"]
    assert sent == {404, 409, 413, 415, 422}
    assert sent | {503} <= {int(status) for status in declared}, sorted(declared)
