"""The API's operations endpoints over real HTTP: liveness that no upload can hold up, readiness that names the
dependency that fails, and Prometheus metrics that move with uploads and refusals."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.context import build_context
from core.settings import Settings
from ingest.schemas import IngestError, SessionOut
from ingest.uploads import Uploads
from proctor.local_server import BackgroundServer
from proctor.wiring import platform_app
from storage.embedded_s3 import EmbeddedS3
from tests.support.platform import MIB, Api, Caller, declare, problem, session_body

REQUEST_THREADS = 40  # the thread pool that serves sync routes and dependencies (anyio's default limiter)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def blocked_gets(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Semaphore]:
    """`GET /v1/sessions/{id}` blocks (as a slow `complete` would) until the test ends; each blocked request
    releases the semaphore once it holds a thread of the pool."""
    holding, release = threading.Semaphore(0), threading.Event()

    def get(tenant_id: str, session_id: str) -> SessionOut:
        holding.release()
        release.wait(60)
        raise IngestError(404, "not_found", f"no session {session_id!r}: only the time this call takes matters")

    monkeypatch.setattr(api.uploads, "get", get)
    yield holding
    release.set()


def test_liveness_and_readiness_answer_while_every_request_thread_is_busy(
    api: Api, tenant: tuple[str, str], blocked_gets: threading.Semaphore
) -> None:
    headers = {"Authorization": f"Bearer {tenant[1]}"}
    blocked = [
        threading.Thread(
            target=httpx.get,
            args=(f"{api.url}/v1/sessions/s{n}",),
            kwargs={"headers": headers, "timeout": 90},
            daemon=True,
        )
        for n in range(REQUEST_THREADS + 10)
    ]
    for request in blocked:
        request.start()
    for _ in range(REQUEST_THREADS):  # every thread of the pool is held, and ten more requests wait for one
        assert blocked_gets.acquire(timeout=60), "the blocked requests never reached the pool"
    assert not blocked_gets.acquire(timeout=0.5), "the pool should hold no more than its threads"

    started = time.monotonic()
    live = httpx.get(f"{api.url}/healthz", timeout=1.0)
    assert live.status_code == 200 and time.monotonic() - started < 1.0
    ready = httpx.get(f"{api.url}/readyz", timeout=5.0)
    assert ready.status_code == 200, ready.text
    assert httpx.get(f"{api.url}/metrics", timeout=5.0).status_code == 200


def test_readiness_names_the_object_store_when_it_stops(settings: Settings, tmp_path: Path) -> None:
    embedded = EmbeddedS3(tmp_path / "own-s3", bucket="ready")
    with embedded as location:
        context = build_context(settings.model_copy(update={"ready_check_timeout_s": 1.0}), location)
        try:
            with BackgroundServer(platform_app(context)) as url:
                assert httpx.get(f"{url}/readyz", timeout=5).json() == {"status": "ready"}
                embedded.stop()
                started = time.monotonic()
                not_ready = httpx.get(f"{url}/readyz", timeout=10)
                waited_s = time.monotonic() - started
                assert httpx.get(f"{url}/healthz", timeout=1).status_code == 200, "still live: restarting won't help"
        finally:
            context.close()
    assert problem(not_ready) == (503, "not_ready")
    (failing,) = not_ready.json()["details"]["failing"]
    assert failing["dependency"] == "object store" and failing["reason"]
    assert "object store" in not_ready.json()["detail"] and "database" not in not_ready.json()["detail"]
    assert waited_s < 1.0 + 1.0, "within the readiness timeout"


def test_metrics_count_upload_bytes_refusals_and_the_queue(api: Api, caller: Caller, multipart_video: Path) -> None:
    before = scrape(api.url)
    session = caller.register(session_body(declare("webcam", multipart_video))).json()
    part = multipart_video.read_bytes()[: 5 * MIB]
    assert caller.put_part(session["id"], "webcam", 1, part).status_code == 200
    assert caller.put_part(session["id"], "webcam", 2, b"short").status_code == 422  # part_size_invalid
    assert httpx.get(f"{api.url}/v1/sessions/{session['id']}").status_code == 401  # no key
    too_large = httpx.post(f"{api.url}/v1/sessions", content=b"x" * (2 * MIB), headers={"Authorization": "Bearer x"})
    assert too_large.status_code == 413  # the guard's refusal, before any route runs
    after = scrape(api.url)

    assert moved(before, after, "proctor_api_upload_bytes_total", kind="webcam") == len(part)
    assert moved(before, after, "proctor_api_problems_total", code="part_size_invalid") == 1
    assert moved(before, after, "proctor_api_problems_total", code="unauthorized") == 1
    assert moved(before, after, "proctor_api_problems_total", code="body_too_large") == 1
    assert ("proctor_queue_jobs", (("state", "queued"),)) in after, "the queue's depth is on the same page"


def test_each_app_has_a_registry_of_its_own(api: Api, uploads: Uploads) -> None:
    """Two apps in one process (as tests build them) count apart: no global registry."""
    other = platform_app(api.context, uploads)
    with BackgroundServer(other) as other_url:
        before = scrape(other_url)
        assert httpx.get(f"{api.url}/v1/sessions/x").status_code == 401
        assert moved(before, scrape(other_url), "proctor_api_problems_total", code="unauthorized") == 0
