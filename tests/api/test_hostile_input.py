"""Hostile input against the served app (the platform API and the review UI over real HTTP, on real S3 and on
SQLite and PostgreSQL): each row is refused with a 4xx problem document and its code, and nothing already
stored changes. The rows: bodies past their route's limit (declared, or streamed in chunks, before any
authentication), inputs that used to answer 500, and requests no route takes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.guards import BodyLimits
from core.context import AppContext
from core.tables import Base, ExamSession, Media
from core.tenants import add_tenant, issue_api_key
from core.vocabulary import Role
from ingest.client import IngestClient, upload_session
from proctor.local_server import BackgroundServer
from proctor.wiring import body_limits, server_app
from review_ui.accounts import add_user, assign
from tests.review_ui.conftest import PASSWORD, Browser
from tests.support.platform import declare, problem, session_body
from tests.support.raw_http import declared_body

DIGITS_5000 = "9" * 5000


@dataclass
class Stage:
    """The served app with one tenant, its completed upload, and a reviewer of that tenant, signed in."""

    url: str
    context: AppContext
    limits: BodyLimits
    key: str
    session_id: str
    reviewer: Browser
    tmp: Path

    def api(self, *, signed: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"} if signed else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture
def stage(context: AppContext, small_video: Path, tmp_path: Path) -> Iterator[Stage]:
    with BackgroundServer(server_app(context)) as url:
        suffix = uuid.uuid4().hex[:8]
        with context.db() as db:
            tenant = add_tenant(db, f"hostile-{suffix}", "hostile platform")
            key = issue_api_key(db, tenant)
            user = add_user(db, f"reviewer-{suffix}", PASSWORD, Role.REVIEWER)
            assign(db, user, tenant.slug)
            db.commit()
        events = tmp_path / "events.jsonl"
        events.write_text('{"type": "copy", "t_ms": 500}\n')
        with IngestClient(url, key) as client:
            uploaded = upload_session(
                client, webcam=small_video, events=events, exam_id="exam-1", candidate_id="cand-1"
            )
        reviewer = Browser(url)
        assert reviewer.login(f"reviewer-{suffix}", PASSWORD).status_code == 303
        reviewer.page("/review/queue")
        yield Stage(url, context, body_limits(context.settings), key, uploaded["id"], reviewer, tmp_path)
        reviewer.close()


# -- what is stored -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stored:
    rows: dict[str, int]  # table -> row count
    sessions: dict[str, tuple[str, str]]  # id -> (state, updated_at)
    media: dict[str, str]  # id -> state
    objects: dict[str, str]  # key -> etag

    def audited(self) -> int:
        return self.rows.get("audit_events", 0)

    def data(self) -> Stored:
        """Everything but the audit trail, which records a refusal (one entry at most: `review_ui.refusal_audit`)."""
        return Stored(
            {t: n for t, n in self.rows.items() if t != "audit_events"}, self.sessions, self.media, self.objects
        )

    def without(self, session_id: str) -> Stored:
        """What is stored apart from one session (one that a row rejects, as documented)."""
        return Stored(
            rows={},
            sessions={k: v for k, v in self.sessions.items() if k != session_id},
            media={k: v for k, v in self.media.items() if not k.startswith(f"{session_id}/")},
            objects={k: v for k, v in self.objects.items() if f"/{session_id}/" not in k},
        )


def stored(context: AppContext) -> Stored:
    with context.db() as db:
        rows = {t.name: int(db.scalar(select(func.count()).select_from(t)) or 0) for t in Base.metadata.sorted_tables}
        sessions = {s.id: (s.state, s.updated_at.isoformat()) for s in db.scalars(select(ExamSession))}
        media = {f"{m.session_id}/{m.kind}": m.state for m in db.scalars(select(Media))}
    objects = {o.key: o.etag for o in context.store.list_objects("")}
    return Stored(rows, sessions, media, objects)


# -- how each row sends its request ---------------------------------------------------------------------------
Send = Callable[[Stage, str], httpx.Response]


def declared(method: str, path: str, length: Callable[[Stage], int], **headers: str) -> Send:
    def send(stage: Stage, target: str) -> httpx.Response:
        return declared_body(stage.url, method, path.format(sid=target), length(stage), headers)

    return send


def streamed(
    method: str, path: str, length: Callable[[Stage], int], *, signed: bool = False, as_reviewer: bool = False, **h: str
) -> Send:
    """A chunked body (no Content-Length) that runs on past `length` bytes."""

    def send(stage: Stage, target: str) -> httpx.Response:
        total, chunk = length(stage) + 128 * 1024, b"a" * 65536

        def body() -> Iterator[bytes]:
            for _ in range(-(-total // len(chunk))):
                yield chunk

        client = stage.reviewer if as_reviewer else stage.api(signed=signed)
        return client.request(method, path.format(sid=target), content=body(), headers=h)

    return send


def api_call(method: str, path: str, *, signed: bool = True, **kwargs: Any) -> Send:
    def send(stage: Stage, target: str) -> httpx.Response:
        with stage.api(signed=signed) as client:
            return client.request(method, path.format(sid=target), **kwargs)

    return send


def register(**changes: Any) -> Send:
    def send(stage: Stage, _target: str) -> httpx.Response:
        video = stage.tmp / "declared.mp4"
        video.write_bytes(b"\0" * 1000)
        with stage.api() as client:
            return client.post("/v1/sessions", json=session_body(declare("webcam", video), **changes))

    return send


def events_log_session(line: bytes) -> Callable[[Stage], str]:
    """Register a session whose event log is `line`, and upload it (its `complete` is the hostile request)."""

    def prepare(stage: Stage) -> str:
        video, log = stage.tmp / "other.mp4", stage.tmp / "hostile.jsonl"
        video.write_bytes(b"\0" * 1000)
        log.write_bytes(line + b"\n")
        with stage.api() as client:
            body = session_body(declare("webcam", video), declare("events", log, "application/x-ndjson"))
            sid: str = client.post("/v1/sessions", json=body).json()["id"]
            assert client.put(f"/v1/sessions/{sid}/media/events/parts/1", content=log.read_bytes()).is_success
        return sid

    return prepare


def reviewer_call(method: str, path: str, **kwargs: Any) -> Send:
    def send(stage: Stage, _target: str) -> httpx.Response:
        return stage.reviewer.request(method, path.format(sid=stage.session_id), **kwargs)

    return send


def reviewer_form(path: str, **fields: str) -> Send:
    """A form of the signed-in reviewer, asking for JSON as the UI's scripts do."""

    def send(stage: Stage, _target: str) -> httpx.Response:
        return stage.reviewer.post(
            path.format(sid=stage.session_id), data=fields, headers={"Accept": "application/json"}
        )

    return send


def login_with_token(token: str) -> Send:
    def send(stage: Stage, _target: str) -> httpx.Response:
        with Browser(stage.url) as browser:
            browser.page("/review/login")
            return browser.post("/review/login", data={"username": "nobody", "password": "x" * 12, "csrf_token": token})

    return send


JSON_LIMIT: Callable[[Stage], int] = lambda s: s.limits.json_bytes  # noqa: E731
PART_LIMIT: Callable[[Stage], int] = lambda s: s.limits.part_bytes  # noqa: E731
FORM_LIMIT: Callable[[Stage], int] = lambda s: s.limits.form_bytes  # noqa: E731
PART_PATH = "/v1/sessions/{sid}/media/webcam/parts/1"


# -- the table ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    id: str
    send: Send
    status: int
    code: str | None  # None: the review UI's own refusal (`{"detail": ...}`), the same as for a wrong token
    prepare: Callable[[Stage], str] | None = None  # runs before the snapshot; `send` gets what it returns
    rejects: bool = False  # the prepared session ends rejected with `code`, and stays stored for inspection


CASES = [
    # bodies over their route's limit, refused before authentication and parsing
    Hostile(
        "json declared over the limit, anonymous",
        declared("POST", "/v1/sessions", lambda s: s.limits.json_bytes + 1, **{"Content-Type": "application/json"}),
        413,
        "body_too_large",
    ),
    Hostile(
        "json declared at 10 GB to presign",
        declared("POST", "/v1/sessions/{sid}/media/webcam/parts/presign", lambda s: 10**10),
        413,
        "body_too_large",
    ),
    Hostile("content-length of 20 digits", declared("POST", "/v1/sessions", lambda s: 10**19), 413, "body_too_large"),
    Hostile(
        "json streamed past the limit, anonymous",
        streamed("POST", "/v1/sessions", JSON_LIMIT, **{"Content-Type": "application/json"}),
        413,
        "body_too_large",
    ),
    Hostile(
        "json streamed past the limit, with a key",
        streamed("POST", "/v1/sessions", JSON_LIMIT, signed=True, **{"Content-Type": "application/json"}),
        413,
        "body_too_large",
    ),
    Hostile(
        "part declared over the largest part",
        declared("PUT", PART_PATH, lambda s: s.limits.part_bytes + 1),
        413,
        "body_too_large",
    ),
    Hostile(
        "login form declared over the limit",
        declared(
            "POST",
            "/review/login",
            lambda s: s.limits.form_bytes + 1,
            **{"Content-Type": "application/x-www-form-urlencoded"},
        ),
        413,
        "body_too_large",
    ),
    Hostile(
        "login form streamed past the limit",
        streamed("POST", "/review/login", FORM_LIMIT, **{"Content-Type": "application/x-www-form-urlencoded"}),
        413,
        "body_too_large",
    ),
    Hostile(
        "signed-in form streamed past the limit",
        streamed(
            "POST",
            "/review/sessions/{sid}/claim",
            FORM_LIMIT,
            as_reviewer=True,
            **{"Content-Type": "application/x-www-form-urlencoded"},
        ),
        413,
        "body_too_large",
    ),
    # what used to answer 500
    Hostile(
        "event log nested 100,000 deep",
        api_call("POST", "/v1/sessions/{sid}/media/events/complete"),
        422,
        "invalid_event_log",
        events_log_session(b"[" * 100_000),
        rejects=True,
    ),
    Hostile(
        "event log t_ms of 5,000 digits",
        api_call("POST", "/v1/sessions/{sid}/media/events/complete"),
        422,
        "invalid_event_log",
        events_log_session(b'{"type": "copy", "t_ms": ' + DIGITS_5000.encode() + b"}"),
        rejects=True,
    ),
    Hostile(
        "started_at in year 1, east of UTC", register(started_at="0001-01-01T00:00:00+01:00"), 422, "validation_error"
    ),
    Hostile("started_at in year 1, UTC", register(started_at="0001-01-01T00:00:00Z"), 422, "validation_error"),
    Hostile(
        "started_at in year 9999, west of UTC",
        register(started_at="9999-12-31T23:00:00-05:00"),
        422,
        "validation_error",
    ),
    Hostile(
        "registration nested 100,000 deep",
        api_call("POST", "/v1/sessions", content=b"[" * 100_000, headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    ),
    Hostile(
        "presign a part number of 5,000 digits",
        api_call(
            "POST",
            "/v1/sessions/{sid}/media/webcam/parts/presign",
            content=f'{{"part_numbers": [{DIGITS_5000}]}}',
            headers={"Content-Type": "application/json"},
        ),
        400,
        "bad_request",
    ),
    Hostile(
        "part number of 5,000 digits in the path",
        api_call("PUT", f"/v1/sessions/{{sid}}/media/webcam/parts/{DIGITS_5000}", content=b"x"),
        422,
        "validation_error",
    ),
    Hostile(
        "Range of 5,000 digits on a recording",
        reviewer_call("GET", "/review/sessions/{sid}/media/webcam", headers={"Range": f"bytes={DIGITS_5000}-"}),
        416,
        "range_not_satisfiable",
    ),
    Hostile(
        "suffix Range of 5,000 digits on a recording",
        reviewer_call("GET", "/review/sessions/{sid}/media/webcam", headers={"Range": f"bytes=-{DIGITS_5000}"}),
        416,
        "range_not_satisfiable",
    ),
    Hostile(
        "Range of 5,000 digits on an image",
        reviewer_call("GET", "/review/sessions/{sid}/thumbnails", headers={"Range": f"bytes=0-{DIGITS_5000}"}),
        416,
        "range_not_satisfiable",
    ),
    Hostile(
        "non-ASCII CSRF token in a form", reviewer_form("/review/sessions/{sid}/claim", csrf_token="é" * 43), 403, None
    ),
    Hostile(
        "non-ASCII CSRF token in the header",
        reviewer_call(
            "POST", "/review/sessions/{sid}/claim", headers={"X-CSRF-Token": b"\xe9" * 43, "Accept": "application/json"}
        ),
        403,
        None,
    ),
    # requests no route takes
    Hostile("unrouted API path", api_call("GET", "/v1/no-such-thing"), 404, "not_found"),
    Hostile("unrouted path, anonymous", api_call("GET", "/wp-admin/setup.php", signed=False), 404, "not_found"),
    Hostile("method no route takes", api_call("PATCH", "/v1/sessions/{sid}", json={}), 405, "method_not_allowed"),
    Hostile("unrouted review UI path", reviewer_call("GET", "/review/no-such-page"), 404, "not_found"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_with_a_problem_and_changes_nothing(stage: Stage, case: Hostile) -> None:
    target = case.prepare(stage) if case.prepare else stage.session_id
    before = stored(stage.context)
    response = case.send(stage, target)
    if case.code is None:
        assert response.status_code == case.status, response.text
        assert "csrf" in response.json()["detail"].lower()
    else:
        assert problem(response) == (case.status, case.code), response.text
    after = stored(stage.context)
    if case.rejects:
        assert after.without(target) == before.without(target), "only the refused upload changed"
        assert {k: v for k, v in after.objects.items() if k in before.objects} == before.objects
        with stage.api() as client:
            session = client.get(f"/v1/sessions/{target}").json()
        assert (session["state"], session["reason"]["code"]) == ("rejected", case.code)
    else:
        assert after.data() == before.data(), "nothing stored changed"
        assert after.audited() - before.audited() <= 1, "a refusal is audited once, if at all"


def test_non_ascii_csrf_token_on_the_login_form_is_refused_like_a_wrong_one(stage: Stage) -> None:
    response = login_with_token("é" * 43)(stage, stage.session_id)
    assert response.status_code == 403


def test_the_table_covers_every_kind_of_refusal() -> None:
    assert len(CASES) >= 25
    assert {c.status for c in CASES} >= {400, 403, 404, 405, 413, 416, 422}


def test_a_refused_body_says_the_limit_and_what_to_do(stage: Stage) -> None:
    response = declared("POST", "/v1/sessions", lambda s: s.limits.json_bytes + 1)(stage, stage.session_id)
    body = json.loads(response.content)
    assert body["details"] == {"limit_bytes": stage.limits.json_bytes}
    assert str(stage.limits.json_bytes) in body["detail"] and "OpenAPI" in body["detail"]
