"""The /v1 upload protocol over real HTTP, against the real embedded S3 server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import func, select

from core.tables import ExamSession, Job
from ingest.client import LocalMedia, upload_session
from tests.support.platform import MIB, Api, Caller, declare, problem, session_body


# -- the happy paths ---------------------------------------------------------------------------------------
def test_upload_through_api_parts_validates_and_queues(api: Api, caller: Caller, multipart_video: Path) -> None:
    created = caller.register(session_body(declare("webcam", multipart_video)))
    assert created.status_code == 201
    session = created.json()
    assert session["state"] == "uploading"
    assert session["media"][0]["part_count"] == 3
    done = caller.upload_whole(session["id"], "webcam", multipart_video)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["state"] == "queued"
    probe = body["media"][0]["probe"]
    assert probe["codec"] == "h264" and probe["duration_s"] > 0 and probe["width"] > 0
    with api.context.db() as db:
        jobs = db.scalars(select(Job).where(Job.session_id == session["id"])).all()
        assert [(j.kind, j.state) for j in jobs] == [("process", "queued")]


def test_upload_through_presigned_part_urls(caller: Caller, multipart_video: Path) -> None:
    session = caller.register(session_body(declare("webcam", multipart_video))).json()
    urls = caller.http.post(
        f"/v1/sessions/{session['id']}/media/webcam/parts/presign", json={"part_numbers": [1, 2, 3]}
    ).json()["parts"]
    data = multipart_video.read_bytes()
    for part in urls:
        start = (part["part_number"] - 1) * 5 * MIB
        assert httpx.put(part["url"], content=data[start : start + 5 * MIB]).status_code == 200
    parts = caller.http.get(f"/v1/sessions/{session['id']}/media/webcam/parts").json()
    assert parts["missing"] == [] and [p["part_number"] for p in parts["received"]] == [1, 2, 3]
    assert caller.complete(session["id"], "webcam").json()["state"] == "queued"


def test_event_log_is_stored_beside_the_video(api: Api, caller: Caller, small_video: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "focus_lost", "t_ms": 1000}\n{"type": "paste", "t_ms": 2500, "detail": "x"}\n')
    session = caller.register(
        session_body(declare("webcam", small_video), declare("events", events, "application/x-ndjson"))
    ).json()
    assert caller.upload_whole(session["id"], "events", events).json()["state"] == "uploading"
    final = caller.upload_whole(session["id"], "webcam", small_video).json()
    assert final["state"] == "queued"
    assert next(m for m in final["media"] if m["kind"] == "events")["events_count"] == 2
    keys = sorted(o.key for o in api.context.store.list_objects(""))
    mine = [k for k in keys if f"/{session['id']}/" in k]
    assert [k.rsplit("/", 2)[1:] for k in mine] == [["media", "events"], ["media", "webcam"]]
    assert mine[0].rsplit("/", 2)[0] == mine[1].rsplit("/", 2)[0]
    stored = b"".join(api.context.store.iter_chunks(mine[0])).splitlines()
    assert [json.loads(line)["type"] for line in stored] == ["focus_lost", "paste"]


def _send_truncated_part(url: str, key: str, path: str, declared: int, sent: bytes) -> None:
    """A client that promises `declared` bytes, sends fewer, and drops the connection."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port)) as s:
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Length: {declared}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        s.sendall(head.encode() + sent)


def test_resume_after_an_interrupted_upload(
    api: Api, tenant: tuple[str, str], caller: Caller, multipart_video: Path
) -> None:
    media = LocalMedia.from_path("webcam", multipart_video)
    session = caller.register(session_body(declare("webcam", multipart_video))).json()
    data = multipart_video.read_bytes()
    assert caller.put_part(session["id"], "webcam", 1, data[: 5 * MIB]).status_code == 200
    # the connection breaks in the middle of part 2
    _send_truncated_part(
        api.url, tenant[1], f"/v1/sessions/{session['id']}/media/webcam/parts/2", 5 * MIB, data[5 * MIB : 6 * MIB]
    )
    parts = caller.http.get(f"/v1/sessions/{session['id']}/media/webcam/parts").json()
    assert parts["missing"] == [2, 3], "a broken part is not stored"
    sent: list[int] = []
    with api.client(tenant[1]) as client:
        final = client.upload_media(session["id"], media, on_bytes=sent.append)
    assert final["state"] == "queued"
    assert sent[0] == 5 * MIB, "the resumed upload counts part 1 as done"
    assert sum(sent) == len(data)


def test_replayed_complete_returns_the_same_session_once(api: Api, caller: Caller, small_video: Path) -> None:
    session = caller.register(session_body(declare("webcam", small_video))).json()
    first = caller.upload_whole(session["id"], "webcam", small_video)
    again = caller.complete(session["id"], "webcam")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    with api.context.db() as db:
        assert db.scalar(select(func.count()).select_from(Job).where(Job.session_id == session["id"])) == 1


def test_concurrent_duplicate_post_with_one_idempotency_key(api: Api, caller: Caller, small_video: Path) -> None:
    body = session_body(declare("webcam", small_video), exam_id=f"exam-{uuid.uuid4().hex[:8]}")
    barrier = threading.Barrier(8)
    results: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=api.url, headers=caller.http.headers, timeout=60) as http:
            barrier.wait()
            results.append(http.post("/v1/sessions", json=body, headers={"Idempotency-Key": "same-key-1"}))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [200] * 7 + [201], [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    sid = results[0].json()["id"]
    uploads = [key for key, _ in api.context.store.list_multipart_uploads("") if f"/{body['exam_id']}/" in key]
    assert [k for k in uploads if f"/{sid}/" not in k] == [], "losers leave no orphaned multipart uploads"
    with api.context.db() as db:
        count = db.scalar(
            select(func.count()).select_from(ExamSession).where(ExamSession.attempt_id == body["attempt_id"])
        )
        assert count == 1


def test_cli_style_rerun_resumes_the_same_session(api: Api, tenant: tuple[str, str], small_video: Path) -> None:
    with api.client(tenant[1]) as client:
        first = upload_session(client, webcam=small_video, exam_id="exam-cli", candidate_id="c1")
        second = upload_session(client, webcam=small_video, exam_id="exam-cli", candidate_id="c1")
    assert first["id"] == second["id"] and second["state"] == "queued"


# -- tenants, auth, erasure ---------------------------------------------------------------------------------
def test_tenant_isolation(api: Api, caller: Caller, small_video: Path) -> None:
    session = caller.register(session_body(declare("webcam", small_video))).json()
    sid = session["id"]
    _, other_key = api.tenant()
    other = Caller(httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {other_key}"}))
    attempts = {
        "get": other.http.get(f"/v1/sessions/{sid}"),
        "parts": other.http.get(f"/v1/sessions/{sid}/media/webcam/parts"),
        "presign": other.http.post(f"/v1/sessions/{sid}/media/webcam/parts/presign", json={"part_numbers": [1]}),
        "put": other.put_part(sid, "webcam", 1, small_video.read_bytes()),
        "complete": other.complete(sid, "webcam"),
        "delete": other.http.delete(f"/v1/sessions/{sid}"),
    }
    assert {name: problem(r) for name, r in attempts.items()} == {name: (404, "session_not_found") for name in attempts}
    assert caller.upload_whole(sid, "webcam", small_video).json()["state"] == "queued"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer pp_nope_nope", "Basic dXNlcjpwYXNz", "Bearer not-a-key"])
def test_requests_without_a_valid_key_are_refused(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in [("GET", "/v1/sessions/x"), ("POST", "/v1/sessions"), ("DELETE", "/v1/sessions/x")]:
        response = httpx.request(method, api.url + path, headers=headers, json={})
        assert problem(response) == (401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_delete_erases_every_object_and_keeps_the_record(api: Api, caller: Caller, small_video: Path) -> None:
    sid = caller.register(session_body(declare("webcam", small_video))).json()["id"]
    caller.upload_whole(sid, "webcam", small_video)
    assert any(f"/{sid}/" in o.key for o in api.context.store.list_objects(""))
    deleted = caller.http.delete(f"/v1/sessions/{sid}")
    assert deleted.status_code == 200 and deleted.json()["state"] == "deleted"
    assert not any(f"/{sid}/" in o.key for o in api.context.store.list_objects(""))
    assert caller.http.get(f"/v1/sessions/{sid}").json()["state"] == "deleted"
    with api.context.db() as db:
        assert db.scalars(select(Job.state).where(Job.session_id == sid)).all() == ["failed"]


def test_delete_during_upload_aborts_the_multipart_upload(api: Api, caller: Caller, multipart_video: Path) -> None:
    sid = caller.register(session_body(declare("webcam", multipart_video))).json()["id"]
    caller.put_part(sid, "webcam", 1, multipart_video.read_bytes()[: 5 * MIB])
    caller.http.delete(f"/v1/sessions/{sid}")
    assert not [u for u in api.context.store.list_multipart_uploads("") if f"/{sid}/" in u[0]]
    assert problem(caller.put_part(sid, "webcam", 2, b"x")) == (409, "session_closed")


def test_openapi_spec_is_served(api: Api) -> None:
    spec = httpx.get(api.url + "/openapi.json").json()
    assert {"/v1/sessions", "/v1/sessions/{session_id}/media/{kind}/complete"} <= set(spec["paths"])


def test_openapi_describes_the_review_result_and_the_probe(api: Api) -> None:
    """Platforms generate clients from the spec: the review result and the probe are typed schemas there."""
    spec = httpx.get(api.url + "/openapi.json").json()
    ok = spec["paths"]["/v1/sessions/{session_id}/review"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PlatformReview"}
    schemas = spec["components"]["schemas"]
    review = schemas["PlatformReview"]["properties"]
    assert {"outcome", "final", "flags", "comments", "review_status"} <= set(review)
    flag = schemas["FlagWithEvidence"]["properties"]
    assert {"kind", "start_s", "end_s", "decision", "evidence_urls"} <= set(flag)
    assert {"duration_s", "frame_rate", "keyframe_interval_s"} <= set(schemas["VideoProbe"]["properties"])
