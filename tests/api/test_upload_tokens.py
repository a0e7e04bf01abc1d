"""Upload tokens over real HTTP: a browser recorder uploads one session's media with a `put_` token, never the
tenant's API key, and the token opens nothing else."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from core.db import utcnow
from core.tables import UploadToken
from tests.support.platform import MIB, Api, Caller, problem, session_body


def streaming(kind: str = "webcam", content_type: str = "video/mp4") -> dict[str, Any]:
    return {"kind": kind, "content_type": content_type, "streaming": True}


def as_browser(api: Api, token: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)


def new_token(caller: Caller, session_id: str, **body: Any) -> str:
    issued = caller.http.post(f"/v1/sessions/{session_id}/upload-tokens", json=body or None)
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["token"]
    return token


@pytest.fixture
def session_id(caller: Caller) -> str:
    created = caller.register(session_body(streaming()))
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]
    return sid


def test_a_token_uploads_and_completes_its_session(
    api: Api, caller: Caller, session_id: str, multipart_video: Path
) -> None:
    issued = caller.http.post(f"/v1/sessions/{session_id}/upload-tokens")
    assert issued.status_code == 201
    body = issued.json()
    assert body["token"].startswith("put_") and body["session_id"] == session_id
    data = multipart_video.read_bytes()
    with as_browser(api, body["token"]) as browser:
        assert browser.get(f"/v1/sessions/{session_id}").json()["state"] == "uploading"
        for n, start in enumerate(range(0, len(data), 5 * MIB), start=1):
            part = data[start : start + 5 * MIB]
            sent = browser.put(
                f"/v1/sessions/{session_id}/media/webcam/parts/{n}",
                content=part,
                headers={"X-Part-SHA256": hashlib.sha256(part).hexdigest()},
            )
            assert sent.status_code == 200, sent.text
        parts = browser.get(f"/v1/sessions/{session_id}/media/webcam/parts").json()
        assert [p["part_number"] for p in parts["received"]] == [1, 2, 3] and parts["part_count"] is None
        done = browser.post(
            f"/v1/sessions/{session_id}/media/webcam/complete",
            json={"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "queued"


def test_the_python_entry_point_issues_the_same_tokens(api: Api, tenant: tuple[str, str], session_id: str) -> None:
    issued = api.uploads.issue_upload_token(tenant[0], session_id, ttl_s=60)
    assert issued.expires_at <= utcnow() + timedelta(seconds=60)
    with as_browser(api, issued.token) as browser:
        assert browser.get(f"/v1/sessions/{session_id}").status_code == 200


def test_a_token_lives_at_most_the_servers_ttl(caller: Caller, session_id: str) -> None:
    asked = caller.http.post(f"/v1/sessions/{session_id}/upload-tokens", json={"ttl_s": 30 * 24 * 3600})
    assert asked.status_code == 201
    assert datetime.fromisoformat(asked.json()["expires_at"]) <= utcnow() + timedelta(hours=4)


@pytest.mark.parametrize("token", ["put_", "put_not-a-token", "put_" + "x" * 43])
def test_an_unknown_or_malformed_token_is_invalid(api: Api, session_id: str, token: str) -> None:
    with as_browser(api, token) as browser:
        assert problem(browser.get(f"/v1/sessions/{session_id}")) == (401, "upload_token_invalid")


def test_an_expired_token_says_so(api: Api, caller: Caller, session_id: str) -> None:
    token = new_token(caller, session_id)
    with api.context.db() as db:
        db.execute(update(UploadToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    with as_browser(api, token) as browser:
        refused = browser.put(
            f"/v1/sessions/{session_id}/media/webcam/parts/1",
            content=b"x",
            headers={"X-Part-SHA256": hashlib.sha256(b"x").hexdigest()},
        )
    assert problem(refused) == (401, "upload_token_expired")


def test_a_token_opens_only_its_own_session(api: Api, caller: Caller, session_id: str) -> None:
    other = caller.register(session_body(streaming())).json()["id"]
    with as_browser(api, new_token(caller, session_id)) as browser:
        assert problem(browser.get(f"/v1/sessions/{other}")) == (403, "upload_token_wrong_session")
        assert problem(browser.get(f"/v1/sessions/{other}/media/webcam/parts")) == (403, "upload_token_wrong_session")
        assert problem(browser.post(f"/v1/sessions/{other}/media/webcam/complete")) == (
            403,
            "upload_token_wrong_session",
        )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/sessions/{sid}"),
        ("POST", "/v1/sessions"),
        ("POST", "/v1/sessions/{sid}/upload-tokens"),
        ("POST", "/v1/sessions/{sid}/media/webcam/parts/presign"),
        ("GET", "/v1/sessions/{sid}/review"),
        ("DELETE", "/v1/candidates/cand-7"),
    ],
)
def test_a_token_is_refused_on_every_other_route(
    api: Api, caller: Caller, session_id: str, method: str, path: str
) -> None:
    with as_browser(api, new_token(caller, session_id)) as browser:
        refused = browser.request(method, path.format(sid=session_id), json={"part_numbers": [1]})
    assert problem(refused) == (403, "upload_token_scope")
    assert caller.http.get(f"/v1/sessions/{session_id}").json()["state"] == "uploading", "nothing was erased"


def test_an_erased_sessions_tokens_stop_working(api: Api, caller: Caller, session_id: str) -> None:
    token = new_token(caller, session_id)
    assert caller.http.delete(f"/v1/sessions/{session_id}").status_code == 200
    with as_browser(api, token) as browser:
        assert problem(browser.get(f"/v1/sessions/{session_id}")) == (401, "upload_token_invalid")
    assert problem(caller.http.post(f"/v1/sessions/{session_id}/upload-tokens")) == (410, "session_deleted")


def test_another_tenants_session_gets_no_token(api: Api, session_id: str) -> None:
    _, key = api.tenant()
    with as_browser(api, key) as stranger:
        assert problem(stranger.post(f"/v1/sessions/{session_id}/upload-tokens")) == (404, "session_not_found")


def test_the_openapi_document_describes_tokens(caller: Caller) -> None:
    spec = caller.http.get("/openapi.json").json()
    issue = spec["paths"]["/v1/sessions/{session_id}/upload-tokens"]["post"]
    assert "201" in issue["responses"] and "upload_token_scope" in issue["description"]
    put = spec["paths"]["/v1/sessions/{session_id}/media/{kind}/parts/{part_number}"]["put"]
    assert "upload_token_expired" in put["responses"]["401"]["description"]
    assert "upload_token_wrong_session" in put["responses"]["403"]["description"]
    assert "part_conflict" in put["responses"]["409"]["description"]
    complete = spec["paths"]["/v1/sessions/{session_id}/media/{kind}/complete"]["post"]
    assert "final_checksum_required" in complete["responses"]["422"]["description"]
    assert "CompleteRequest" in str(complete["requestBody"])
