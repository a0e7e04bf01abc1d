"""Part uploads that cannot exhaust the server's memory or threads: a stalled body is dropped (408), 200 slow
uploads hold only the bytes they sent, the part buffers' bound refuses with 503 `upload_capacity`, and 48
`complete` calls stuck on object storage leave the review UI answering.

The server is the whole app (`proctor serve`'s: the API and the review UI in one process), served over real
HTTP on a thread of this process, so its memory is this process's RSS. The slow clients are raw sockets, which
cost this process next to nothing. SQLite alone: what is measured does not depend on the database.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.upload_capacity import UploadCapacity
from core.context import AppContext
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from storage.object_store import ObjectStore, UploadedPart
from tests.support.platform import MIB, Api, problem, session_body
from tests.support.raw_http import declared_body

PART = 5 * MIB  # the tests' part size (tests/conftest.py)
SLOW_UPLOADS = 200
RSS_GROWTH_CAP = 64 * MIB  # today's 200 slow uploads would take 200 parts' worth: 1,000 MiB
LOGIN_WITHIN_S = 1.0


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'proctor.db'}"


def rss_bytes() -> int:
    """This process's resident memory (the served app's included), from the kernel."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class ListingWaits(ObjectStore):
    """The real store, except that listing an upload's parts (what `complete` does first) waits until `released`
    is set: object storage that has stopped answering. Counts the listings waiting, and the most at once."""

    def __init__(self, context: AppContext, released: threading.Event) -> None:
        super().__init__(context.location, retries=0)
        self.released = released
        self._lock = threading.Lock()
        self.waiting = self.peak = 0

    def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        with self._lock:
            self.waiting += 1
            self.peak = max(self.peak, self.waiting)
        try:
            self.released.wait(60)
            return super().list_parts(key, upload_id)
        finally:
            with self._lock:
                self.waiting -= 1


@dataclass
class Served:
    app: FastAPI
    api: Api
    key: str

    @property
    def capacity(self) -> UploadCapacity:
        capacity: UploadCapacity = self.app.state.upload_capacity
        return capacity

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def register(self, parts: int) -> str:
        """A session declaring a webcam file of `parts` whole parts; its id."""
        webcam = {"kind": "webcam", "size_bytes": parts * PART, "sha256": "0" * 64, "content_type": "video/mp4"}
        with self.http() as http:
            response = http.post("/v1/sessions", json=session_body(webcam))
        assert response.status_code == 201, response.text
        sid: str = response.json()["id"]
        return sid

    def parts(self, sid: str) -> list[tuple[int, str]]:
        with self.http() as http:
            listed = http.get(f"/v1/sessions/{sid}/media/webcam/parts").json()["received"]
        return [(p["part_number"], p["etag"]) for p in listed]

    def problems_counted(self) -> dict[str, float]:
        """The problem documents the app has answered, per code, as its /metrics tells an operator."""
        page = httpx.get(f"{self.api.url}/metrics", timeout=10).text
        return {
            m[1]: float(m[2]) for m in re.finditer(r'^proctor_api_problems_total\{code="([^"]+)"\} (\S+)$', page, re.M)
        }

    def login_page_s(self) -> float:
        """Seconds the review UI's login page took to answer."""
        started = time.monotonic()
        response = httpx.get(f"{self.api.url}/review/login", timeout=10)
        assert response.status_code == 200
        return time.monotonic() - started


@pytest.fixture
def serve(context: AppContext) -> Iterator[Callable[..., Served]]:
    """Serve the whole app on `context` with its settings changed by `changes` (and its object store replaced by
    `store`, when given)."""
    with ExitStack() as servers:

        def start(store: ObjectStore | None = None, **changes: object) -> Served:
            settings = context.settings.model_copy(update=changes)
            app = server_app(replace(context, settings=settings, store=store or context.store))
            url = servers.enter_context(BackgroundServer(app))
            api = Api(url, context, app.state.platform.uploads)
            return Served(app, api, api.tenant()[1])

        yield start


def wait_until(condition: Callable[[], bool], timeout_s: float = 20) -> bool:
    """Whether `condition` held within `timeout_s` (the server works on its own thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def part_path(sid: str, n: int) -> str:
    return f"/v1/sessions/{sid}/media/webcam/parts/{n}"


def start_part(served: Served, sid: str, n: int, first: bytes) -> http.client.HTTPConnection:
    """A PUT of part `n` that has sent its headers (a whole part's Content-Length) and only `first` of its body."""
    upload = http.client.HTTPConnection("127.0.0.1", int(served.api.url.rsplit(":", 1)[1]), timeout=30)
    upload.putrequest("PUT", part_path(sid, n))
    upload.putheader("Content-Length", str(PART))
    upload.putheader("Authorization", f"Bearer {served.key}")
    upload.endheaders(first)
    return upload


def test_a_stalled_part_is_answered_408_and_nothing_stored_changes(serve: Callable[..., Served]) -> None:
    served = serve(part_read_timeout_s=0.5)
    sid = served.register(parts=2)
    with served.http() as http:
        assert http.put(part_path(sid, 1), content=b"1" * PART).status_code == 200
    stored = served.parts(sid)

    started = time.monotonic()
    stalled = declared_body(served.api.url, "PUT", part_path(sid, 2), PART, {"Authorization": f"Bearer {served.key}"})
    waited = time.monotonic() - started

    assert problem(stalled) == (408, "part_read_timeout")
    assert stalled.json()["details"] == {"read_timeout_s": 0.5}
    assert stalled.headers["connection"] == "close"
    assert 0.5 <= waited < 10
    assert served.parts(sid) == stored == [(1, stored[0][1])]
    assert served.capacity.buffers.held_bytes == 0, "the stalled part's bytes were let go"


def test_a_part_past_the_buffers_bound_gets_503_and_goes_through_once_they_have_room(
    serve: Callable[..., Served],
) -> None:
    served = serve(part_buffer_bytes=PART)
    sid = served.register(parts=2)
    slow = start_part(served, sid, 1, b"1" * (PART // 2))  # half of part 1, held by the server
    assert wait_until(lambda: served.capacity.buffers.held_bytes == PART // 2)

    with served.http() as client:
        refused = client.put(part_path(sid, 2), content=b"2" * PART)
        assert problem(refused) == (503, "upload_capacity")
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["details"] == {"retry_after_s": 5}
        assert served.parts(sid) == []

        slow.send(b"1" * (PART - PART // 2))  # part 1 finishes, is stored, and its bytes are let go
        assert slow.getresponse().status == 200
        slow.close()
        assert client.put(part_path(sid, 2), content=b"2" * PART).status_code == 200
    assert [n for n, _ in served.parts(sid)] == [1, 2]
    assert served.capacity.buffers.held_bytes == 0


def test_200_slow_part_uploads_hold_only_what_they_sent_and_the_review_ui_answers(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    sid = served.register(parts=SLOW_UPLOADS)
    for _ in range(3):  # warm the app's paths up, so that what is measured is what the slow uploads hold
        served.login_page_s()
        assert served.parts(sid) == []
    baseline = rss_bytes()

    uploads: list[http.client.HTTPConnection] = []
    peak, login_s, trickles = baseline, [], 12
    try:
        for n in range(1, SLOW_UPLOADS + 1):
            uploads.append(start_part(served, sid, n, b"x" * 16))  # a few bytes, then a trickle
        assert wait_until(lambda: served.capacity.buffers.held_bytes == SLOW_UPLOADS * 16), "all are being read"
        for round_ in range(trickles):
            time.sleep(0.2)
            for upload in uploads:
                upload.send(b"x")
            peak = max(peak, rss_bytes())
            if round_ % 3 == 2:
                login_s.append(served.login_page_s())
        assert peak - baseline < RSS_GROWTH_CAP, f"RSS grew by {(peak - baseline) / MIB:.0f} MiB"
        assert max(login_s) < LOGIN_WITHIN_S, login_s
        assert wait_until(lambda: served.capacity.buffers.held_bytes == SLOW_UPLOADS * (16 + trickles)), (
            "each slow upload holds only what it sent"
        )
    finally:
        for upload in uploads:
            upload.close()

    assert wait_until(lambda: served.capacity.buffers.held_bytes == 0), "the abandoned uploads' bytes were let go"
    assert served.parts(sid) == [], "nothing was stored"
    # Each abandoned upload is counted as such, never as a server fault.
    assert wait_until(lambda: served.problems_counted().get("part_body_incomplete") == SLOW_UPLOADS)
    assert "internal_error" not in served.problems_counted()


def test_48_completes_stuck_on_storage_leave_the_review_ui_answering(
    context: AppContext, serve: Callable[..., Served]
) -> None:
    released = threading.Event()
    store = ListingWaits(context, released)
    served = serve(store=store, complete_threads=4)
    limiter = served.capacity.complete_threads
    with served.http() as client, ThreadPoolExecutor(48) as pool:
        sessions = list(pool.map(lambda _: served.register(parts=1), range(48)))
        try:
            completes = [pool.submit(client.post, f"/v1/sessions/{sid}/media/webcam/complete") for sid in sessions]
            assert wait_until(lambda: store.waiting + limiter.statistics().tasks_waiting == 48)
            assert (store.waiting, limiter.statistics().tasks_waiting) == (4, 44), "4 verify, the rest wait their turn"
            assert served.login_page_s() < LOGIN_WITHIN_S
            with httpx.Client(base_url=served.api.url, timeout=10) as other:
                assert other.get(f"/v1/sessions/{uuid.uuid4()}").status_code == 401  # the API's other routes too
        finally:
            released.set()
        answers = [problem(c.result()) for c in completes]
    assert answers == [(409, "missing_parts")] * 48, "each complete ran once storage answered"
    assert store.peak == 4
