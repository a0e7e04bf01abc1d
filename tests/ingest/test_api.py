"""The /v1 ingest API over real HTTP, against the real embedded S3 server, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from ingest import uploads
from ingest.client import IngestClient, IngestRequestError, LocalMedia, upload_session
from ingest.context import IngestContext, build_context
from ingest.db import ExamSession, Job, Media
from ingest.object_store import ObjectStoreError, S3Location
from ingest.schemas import IngestError, SessionCreate
from ingest.settings import Settings
from ingest.tenants import add_tenant
from tests.ingest import media_factory as mf
from tests.ingest.conftest import MIB, Api

STARTED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC).isoformat()


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def small_video(media_dir: Path) -> Path:
    return mf.h264_mp4(media_dir)


@pytest.fixture(scope="module")
def multipart_video(media_dir: Path) -> Path:
    """A valid recording of about 12 MiB: three 5 MiB parts."""
    from ingest.samples import write_filler_video

    return write_filler_video(media_dir / "twelve.mp4", 12 * MIB)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def declare(kind: str, path: Path, content_type: str = "video/mp4", **over: Any) -> dict[str, Any]:
    return {"kind": kind, "size_bytes": path.stat().st_size, "sha256": sha(path), "content_type": content_type} | over


def session_body(*media: dict[str, Any], **over: Any) -> dict[str, Any]:
    body = {
        "exam_id": "exam-101",
        "candidate_id": "cand-7",
        "attempt_id": f"att-{uuid.uuid4().hex[:8]}",
        "started_at": STARTED,
        "media": list(media),
    }
    return body | over


@dataclass
class Caller:
    """Raw HTTP as one tenant, for asserting status codes and problem bodies."""

    http: httpx.Client

    def register(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.post("/v1/sessions", json=body, headers=headers)

    def put_part(self, sid: str, kind: str, n: int, data: bytes, **headers: str) -> httpx.Response:
        return self.http.put(f"/v1/sessions/{sid}/media/{kind}/parts/{n}", content=data, headers=headers)

    def complete(self, sid: str, kind: str) -> httpx.Response:
        return self.http.post(f"/v1/sessions/{sid}/media/{kind}/complete")

    def upload_whole(self, sid: str, kind: str, path: Path) -> httpx.Response:
        data = path.read_bytes()
        size = 5 * MIB
        for n, start in enumerate(range(0, len(data), size), start=1):
            assert self.put_part(sid, kind, n, data[start : start + size]).status_code == 200
        return self.complete(sid, kind)


@pytest.fixture
def tenant(api: Api) -> tuple[str, str]:
    return api.tenant()


@pytest.fixture
def caller(api: Api, tenant: tuple[str, str]) -> Caller:
    return Caller(httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {tenant[1]}"}, timeout=60))


def problem(response: httpx.Response) -> tuple[int, str]:
    if response.is_success:
        return response.status_code, "ok"
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["detail"], "every refusal says what is wrong"
    return response.status_code, body["code"]


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
    assert api.context.uploads.events(session_tenant(api, session["id"]), session["id"])[1]["type"] == "paste"


def session_tenant(api: Api, session_id: str) -> str:
    with api.context.db() as db:
        row = db.get(ExamSession, session_id)
        assert row is not None
        return row.tenant_id


# -- resume, replay, idempotency -----------------------------------------------------------------------------
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


# -- bad inputs ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BadInput:
    name: str
    act: Callable[[Caller, Path], httpx.Response]
    expected: tuple[int, str]
    rejects_session: bool = False


def _upload_file(builder: Callable[[Path], Path], **declared: Any) -> Callable[[Caller, Path], httpx.Response]:
    def act(caller: Caller, tmp: Path) -> httpx.Response:
        path = builder(tmp)
        session = caller.register(session_body(declare("webcam", path, **declared))).json()
        return caller.upload_whole(session["id"], "webcam", path)

    return act


def _register(**changes: Any) -> Callable[[Caller, Path], httpx.Response]:
    def act(caller: Caller, tmp: Path) -> httpx.Response:
        video = mf.h264_mp4(tmp)
        body = dict(changes)
        webcam = declare("webcam", video) | body.pop("webcam", {})
        return caller.register(session_body(webcam, **body))

    return act


def _with_session(step: Callable[[Caller, str, Path], httpx.Response]) -> Callable[[Caller, Path], httpx.Response]:
    def act(caller: Caller, tmp: Path) -> httpx.Response:
        video = mf.h264_mp4(tmp)
        sid = caller.register(session_body(declare("webcam", video))).json()["id"]
        return step(caller, sid, video)

    return act


def _events_log(text: str) -> Callable[[Caller, Path], httpx.Response]:
    def act(caller: Caller, tmp: Path) -> httpx.Response:
        video, log = mf.h264_mp4(tmp), tmp / "e.jsonl"
        log.write_text(text)
        sid = caller.register(session_body(declare("webcam", video), declare("events", log, "application/x-ndjson")))
        return caller.upload_whole(sid.json()["id"], "events", log)

    return act


def _reuse_key(caller: Caller, tmp: Path) -> httpx.Response:
    video = mf.h264_mp4(tmp)
    caller.register(session_body(declare("webcam", video)), key="k-reused")
    return caller.register(session_body(declare("webcam", video)), key="k-reused")


def _same_attempt(caller: Caller, tmp: Path) -> httpx.Response:
    video = mf.h264_mp4(tmp)
    body = session_body(declare("webcam", video))
    caller.register(body)
    return caller.register(body)


BAD_INPUTS = [
    # the file itself, refused on complete
    BadInput("text file", _upload_file(mf.text_file), (422, "not_a_video"), True),
    BadInput("random bytes", _upload_file(mf.random_bytes), (422, "not_a_video"), True),
    BadInput("jpeg still", _upload_file(mf.jpeg_image), (422, "not_a_video"), True),
    BadInput("truncated mp4", _upload_file(mf.truncated_faststart_mp4), (422, "truncated_media"), True),
    BadInput("mp4 without moov", _upload_file(mf.truncated_moov_at_end_mp4), (422, "truncated_media"), True),
    BadInput(
        "zero duration", _upload_file(mf.zero_frame_webm, content_type="video/webm"), (422, "zero_duration"), True
    ),
    BadInput("audio only", _upload_file(mf.audio_only_m4a), (422, "no_video_stream"), True),
    BadInput("unsupported codec", _upload_file(mf.mpeg4_part2_mp4), (422, "unsupported_codec"), True),
    BadInput("tiny dimensions", _upload_file(mf.tiny_mp4), (422, "unsupported_dimensions"), True),
    BadInput("absurd dimensions", _upload_file(mf.oversized_mp4), (422, "unsupported_dimensions"), True),
    BadInput("corrupt first frames", _upload_file(mf.corrupt_first_frames_mp4), (422, "undecodable_media"), True),
    BadInput("checksum mismatch", _upload_file(mf.h264_mp4, sha256="0" * 64), (422, "checksum_mismatch"), True),
    # the registration
    BadInput("path traversal exam id", _register(exam_id="../other-tenant"), (422, "validation_error")),
    BadInput("slash in attempt id", _register(attempt_id="a/b"), (422, "validation_error")),
    BadInput("malformed sha256", _register(webcam={"sha256": "XYZ"}), (422, "validation_error")),
    BadInput("empty file declared", _register(webcam={"size_bytes": 0}), (422, "validation_error")),
    BadInput("no webcam", _register(webcam={"kind": "screen"}), (422, "validation_error")),
    BadInput("wrong content type", _register(webcam={"content_type": "image/jpeg"}), (422, "validation_error")),
    BadInput("naive start time", _register(started_at="2026-11-20T09:00:00"), (422, "validation_error")),
    BadInput("unknown field", _register(proctor_me="please"), (422, "validation_error")),
    BadInput("file too large", _register(webcam={"size_bytes": 10**15}), (413, "media_too_large")),
    BadInput("idempotency key reused", _reuse_key, (422, "idempotency_key_reused")),
    BadInput("attempt registered twice", _same_attempt, (409, "attempt_already_registered")),
    # parts and completion
    BadInput(
        "part too long",
        _with_session(lambda c, s, v: c.put_part(s, "webcam", 1, v.read_bytes() + b"x")),
        (422, "part_size_invalid"),
    ),
    BadInput(
        "part too short",
        _with_session(lambda c, s, v: c.put_part(s, "webcam", 1, v.read_bytes()[:-1])),
        (422, "part_size_invalid"),
    ),
    BadInput(
        "part number 0",
        _with_session(lambda c, s, v: c.put_part(s, "webcam", 0, b"x")),
        (422, "part_number_out_of_range"),
    ),
    BadInput(
        "part beyond the file",
        _with_session(lambda c, s, v: c.put_part(s, "webcam", 2, b"x")),
        (422, "part_number_out_of_range"),
    ),
    BadInput(
        "part corrupted in transit",
        _with_session(lambda c, s, v: c.put_part(s, "webcam", 1, v.read_bytes(), **{"X-Part-SHA256": "0" * 64})),
        (422, "part_checksum_mismatch"),
    ),
    BadInput(
        "complete before any part", _with_session(lambda c, s, v: c.complete(s, "webcam")), (409, "missing_parts")
    ),
    BadInput(
        "undeclared media", _with_session(lambda c, s, v: c.put_part(s, "screen", 1, b"x")), (404, "media_not_declared")
    ),
    BadInput(
        "unknown media kind", _with_session(lambda c, s, v: c.put_part(s, "audio", 1, b"x")), (422, "validation_error")
    ),
    BadInput(
        "part after complete",
        _with_session(lambda c, s, v: (c.upload_whole(s, "webcam", v), c.put_part(s, "webcam", 1, b"x"))[1]),
        (409, "media_already_complete"),
    ),
    BadInput("event log not json", _events_log("focus lost at 10s\n"), (422, "invalid_event_log"), True),
    BadInput(
        "event log unknown type", _events_log('{"type": "teleport", "t_ms": 5}\n'), (422, "invalid_event_log"), True
    ),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(api: Api, caller: Caller, case: BadInput, tmp_path: Path) -> None:
    before = {o.key: o.etag for o in api.context.store.list_objects("")}
    response = case.act(caller, tmp_path)
    assert problem(response) == case.expected, response.text
    after = {o.key: o.etag for o in api.context.store.list_objects("")}
    assert {k: v for k, v in after.items() if k in before} == before, "nothing already stored is lost or changed"
    if case.rejects_session:
        sid = response.url.path.split("/")[3]
        session = caller.http.get(f"/v1/sessions/{sid}").json()
        assert session["state"] == "rejected"
        assert session["reason"]["code"] == case.expected[1] and session["reason"]["message"]
        assert caller.complete(sid, session["media"][0]["kind"]).json()["code"] == case.expected[1], "replay agrees"
        assert any(f"/{sid}/media/" in k for k in after), "the rejected upload stays stored for inspection"


def test_bad_input_table_is_large_enough() -> None:
    assert len(BAD_INPUTS) >= 15


def test_client_reports_refusals_with_their_code(api: Api, tenant: tuple[str, str], tmp_path: Path) -> None:
    bad = mf.text_file(tmp_path).rename(tmp_path / "notes.mp4")
    with IngestClient(api.url, tenant[1]) as client, pytest.raises(IngestRequestError) as refused:
        upload_session(client, webcam=bad, exam_id="e1", candidate_id="c1")
    assert refused.value.code == "not_a_video"
    assert json.dumps(refused.value.body)


def parts_stored(context: IngestContext, video: Path, kinds: tuple[str, ...] = ("webcam",)) -> tuple[str, str]:
    """A new tenant's session with every part of ``kinds`` (one-part files) stored: (tenant id, session id)."""
    with context.db() as db:
        tenant_id = add_tenant(db, f"t-{uuid.uuid4().hex[:10]}", "test platform").id
        db.commit()
    body = SessionCreate.model_validate(session_body(*(declare(kind, video) for kind in kinds)))
    session, _ = context.uploads.register(tenant_id, body, None)
    for kind in kinds:
        context.uploads.store_part(tenant_id, session.id, kind, 1, video.read_bytes(), None)
    return tenant_id, session.id


def test_the_processing_job_takes_the_configured_attempts(
    settings: Settings, s3: S3Location, small_video: Path
) -> None:
    """PROCTOR_JOB_MAX_ATTEMPTS applies to the job a completed upload queues, not only to re-queued ones."""
    context = build_context(settings.model_copy(update={"job_max_attempts": 5}), s3)
    try:
        tenant_id, session_id = parts_stored(context, small_video)
        assert context.uploads.complete(tenant_id, session_id, "webcam").state == "queued"
        with context.db() as db:
            assert db.scalars(select(Job.max_attempts).where(Job.session_id == session_id)).all() == [5]
    finally:
        context.close()


def test_two_media_completing_at_once_queue_the_session_once(
    context: IngestContext, small_video: Path, database_url: str
) -> None:
    """Webcam and screen completed in parallel: each request's last step must see the other's media, so the
    session is queued exactly once (under READ COMMITTED each saw the other as unfinished and none queued)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: the interleaving cannot happen there")
    tenant_id, session_id = parts_stored(context, small_video, ("webcam", "screen"))
    both_flushed = threading.Barrier(2, timeout=5)

    def wait_for_the_other(session: Session, _: object) -> None:
        if any(isinstance(o, Media) and o.state == "complete" for o in session.dirty):
            with contextlib.suppress(threading.BrokenBarrierError):
                both_flushed.wait()

    states: dict[str, str] = {}
    threads = [
        threading.Thread(
            target=lambda k=kind: states.update({k: context.uploads.complete(tenant_id, session_id, k).state})
        )
        for kind in ("webcam", "screen")
    ]
    event.listen(Session, "after_flush", wait_for_the_other)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        event.remove(Session, "after_flush", wait_for_the_other)
    assert sorted(states.values()) == ["queued", "uploading"]
    with context.db() as db:
        assert db.scalars(select(Job.state).where(Job.session_id == session_id)).all() == ["queued"]
        row = db.get(ExamSession, session_id)
        assert row is not None and row.state == "queued"


def test_a_complete_that_failed_after_assembling_can_be_retried(
    context: IngestContext, small_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 lists no parts once an upload is assembled: a complete that failed after that step (storage read
    error during the probe) must not leave the media asking for parts that can never be sent again."""
    tenant_id, session_id = parts_stored(context, small_video)
    probe = uploads.probe_video

    def storage_hiccup(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(uploads, "probe_video", probe)
        raise ObjectStoreError("S3 read timed out")

    monkeypatch.setattr(uploads, "probe_video", storage_hiccup)
    with pytest.raises(ObjectStoreError):
        context.uploads.complete(tenant_id, session_id, "webcam")
    assert context.uploads.complete(tenant_id, session_id, "webcam").state == "queued"


@pytest.mark.parametrize("erased", ["before the probe", "after the probe"])
def test_a_session_erased_while_its_upload_is_verified_answers_gone(
    context: IngestContext, small_video: Path, monkeypatch: pytest.MonkeyPatch, erased: str
) -> None:
    tenant_id, session_id = parts_stored(context, small_video)
    probe = uploads.probe_video

    def erased_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if erased == "before the probe":  # the probe then reads an object that is gone
            context.uploads.delete(tenant_id, session_id)
        probed = probe(*args, **kwargs)
        if erased == "after the probe":  # then the last step finds the session deleted
            context.uploads.delete(tenant_id, session_id)
        return probed

    monkeypatch.setattr(uploads, "probe_video", erased_meanwhile)
    with pytest.raises(IngestError) as refused:
        context.uploads.complete(tenant_id, session_id, "webcam")
    assert (refused.value.status, refused.value.code) == (410, "session_deleted")
    assert context.uploads.get(tenant_id, session_id).state == "deleted"
