"""The recorder page end to end in headless Chromium, against a live `proctor serve` app with real S3.

Chromium's fake camera plays a YUV4MPEG2 file written from `proctor.samples` frames (the candidate's photo).
The page, in platform mode (`?session=<id>#token=put_...`), passes the system check, records, loses the
network for a while, is reloaded mid-exam, records on, and finishes. The server must then hold a webcam whose
parts are exactly the ones the page uploaded (every PUT of a part number carried the same bytes; none missing,
none extra) and an events log with the events the test caused, the restart marked.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Request
from sqlalchemy import select

from core.context import AppContext
from core.enrolments import latest_enrolment
from core.lms_tables import EdxAttempt
from core.tables import ExamSession, Media
from core.tenants import add_tenant, issue_api_key
from ingest.event_log import EventType, parse_event_log
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from tests.recorder.conftest import FPS, SampleFrames, chromium_with_camera, edx_attempt, write_y4m

PART = "/media/webcam/parts/"
WAIT_MS = 90_000


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'proctor.db'}"


@pytest.fixture(scope="module")
def camera_file(sample_frames: SampleFrames, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four seconds of the candidate, with sensor noise so the encoder spends its bitrate (several parts)."""
    rng = np.random.default_rng(5)
    frames = sample_frames.of("candidate")[: 4 * FPS]
    noisy = [np.clip(f.astype(np.int16) + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8) for f in frames]
    return write_y4m(tmp_path_factory.mktemp("camera") / "candidate.y4m", noisy, FPS)


@pytest.fixture(scope="module")
def browser(camera_file: Path) -> Iterator[Browser]:
    with chromium_with_camera(camera_file) as launched:
        yield launched


def phase(page: Page, *phases: str) -> None:
    """Wait until the page's status reaches one of `phases` (an error phase fails at once, with its words)."""
    page.wait_for_function(
        "(phases) => phases.includes(document.getElementById('status').dataset.phase) || "
        "document.getElementById('status').dataset.phase === 'error'",
        arg=list(phases),
        timeout=WAIT_MS,
    )
    status = page.locator("#status")
    assert status.get_attribute("data-phase") in phases, status.text_content()


def recorded_ms(page: Page) -> int:
    """How far the recording's clock has gone, as the page keeps it in IndexedDB."""
    value: int = page.evaluate(
        """(sid) => new Promise((resolve, reject) => {
             const open = indexedDB.open("proctor-recorder");
             open.onsuccess = () => {
               const get = open.result.transaction("sessions").objectStore("sessions").get(sid);
               get.onsuccess = () => { resolve(get.result ? get.result.clockMs : 0); open.result.close(); };
               get.onerror = () => reject(get.error);
             };
             open.onerror = () => reject(open.error);
           })""",
        page.url.split("session=")[1].split("&")[0].split("#")[0],
    )
    return value


def wait_recorded(page: Page, ms: int) -> None:
    page.wait_for_function(
        """([sid, ms]) => new Promise((resolve) => {
             const open = indexedDB.open("proctor-recorder");
             open.onsuccess = () => {
               const get = open.result.transaction("sessions").objectStore("sessions").get(sid);
               get.onsuccess = () => { resolve(Boolean(get.result && get.result.clockMs >= ms)); open.result.close(); };
             };
           })""",
        arg=[page.url.split("session=")[1].split("&")[0].split("#")[0], ms],
        timeout=WAIT_MS,
        polling=250,
    )


def fire(page: Page, script: str) -> None:
    page.evaluate(script)


BLUR_AND_FOCUS = "() => { window.dispatchEvent(new Event('blur')); window.dispatchEvent(new Event('focus')); }"
HIDE_AND_SHOW = """() => {
  const state = Object.getOwnPropertyDescriptor(Document.prototype, 'visibilityState');
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
  document.dispatchEvent(new Event('visibilitychange'));
  delete document.visibilityState;
  document.dispatchEvent(new Event('visibilitychange'));
  return Boolean(state);
}"""
PASTE = "() => document.dispatchEvent(new Event('paste'))"


@pytest.mark.slow
def test_the_page_records_through_an_outage_and_a_reload_and_the_server_holds_every_part_once(
    context: AppContext, browser: Browser
) -> None:
    with BackgroundServer(server_app(context)) as url:
        with context.db() as db:
            tenant = add_tenant(db, f"rec-{uuid.uuid4().hex[:8]}", "recorder test")
            key = issue_api_key(db, tenant)
            db.commit()
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        created = api.post(
            "/v1/sessions",
            json={
                "exam_id": "exam-rec",
                "candidate_id": "cand-rec",
                "attempt_id": uuid.uuid4().hex[:8],
                "started_at": datetime.now(UTC).isoformat(),
                "media": [
                    {"kind": "webcam", "content_type": "video/webm", "streaming": True},
                    {"kind": "events", "content_type": "application/x-ndjson", "streaming": True},
                ],
            },
        )
        assert created.status_code == 201, created.text
        session = created.json()
        part_size = next(m["part_size"] for m in session["media"] if m["kind"] == "webcam")
        token = api.post(f"/v1/sessions/{session['id']}/upload-tokens").json()["token"]

        page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
        sent: dict[int, list[bytes]] = defaultdict(list)  # part number -> bodies of its PUTs that succeeded
        failed: list[int] = []  # part numbers whose PUT never got an answer
        photos_declared: list[int] = []  # statuses of POST .../media (the enrolment photo added)

        def part_number(request: Request) -> int | None:
            if request.method != "PUT" or PART not in request.url:
                return None
            return int(request.url.rsplit("/", 1)[1])

        def on_finished(request: Request) -> None:
            number = part_number(request)
            response = request.response()
            if number is not None and response is not None and response.status == 200:
                sent[number].append(request.post_data_buffer or b"")
            if request.method == "POST" and request.url.endswith("/media") and response is not None:
                photos_declared.append(response.status)

        def on_failed(request: Request) -> None:
            number = part_number(request)
            if number is not None:
                failed.append(number)

        page.on("requestfinished", on_finished)
        page.on("requestfailed", on_failed)

        page.goto(f"{url}/recorder/?session={session['id']}#token={token}")
        phase(page, "ready")
        assert "#token" not in page.url  # the token left the address bar
        page.get_by_role("button", name="Check my camera").click()
        phase(page, "checked")
        assert page.locator("#problems li.ok").count() == 1
        page.get_by_role("button", name="Start recording").click()
        phase(page, "recording")
        wait_recorded(page, 2_000)
        fire(page, BLUR_AND_FOCUS)
        fire(page, HIDE_AND_SHOW)

        # The network drops: parts that fall due are kept and retried; the page says it is offline.
        page.context.set_offline(True)
        phase(page, "offline")
        page.context.set_offline(False)
        phase(page, "recording")
        assert failed, "a part upload was tried while offline"

        # Reloaded mid-exam: the page resumes by itself (no screen to share) and records on.
        before_reload = recorded_ms(page)
        page.reload()
        phase(page, "recording")
        wait_recorded(page, before_reload + 4_000)
        fire(page, PASTE)
        page.get_by_role("button", name="Finish and upload").click()
        phase(page, "done")
        assert "arrived safely" in (page.locator("#status").text_content() or "")
        page.context.close()

        final = api.get(f"/v1/sessions/{session['id']}").json()
        webcam = next(m for m in final["media"] if m["kind"] == "webcam")
        events = next(m for m in final["media"] if m["kind"] == "events")
        assert webcam["state"] == "complete" and events["state"] == "complete", final
        # The checked picture became the candidate's reference photo, sent once: the reload did not send it again.
        assert photos_declared == [201]
        assert next(m for m in final["media"] if m["kind"] == "enrolment_photo")["state"] == "complete", final

        # Every PUT of a part number carried the same bytes; the parts run 1..N with no gap and none extra,
        # each but the last exactly part_size bytes; and the stored file is those parts in order.
        numbers = sorted(sent)
        assert numbers == list(range(1, len(numbers) + 1)), numbers
        assert all(len(set(bodies)) == 1 for bodies in sent.values())
        parts = [sent[n][0] for n in numbers]
        assert all(len(p) == part_size for p in parts[:-1]) and 0 < len(parts[-1]) <= part_size
        assert set(failed) <= set(numbers)  # what failed offline was sent again
        with context.db() as db:
            rows = {m.kind: m for m in db.scalars(select(Media).where(Media.session_id == session["id"]))}
        stored = b"".join(context.store.iter_chunks(rows["webcam"].object_key))
        assert stored == b"".join(parts)
        assert webcam["size_bytes"] == len(stored) and webcam["sha256"] == hashlib.sha256(stored).hexdigest()
        assert stored[:4] == b"\x1a\x45\xdf\xa3"  # a WebM (EBML) header
        assert stored.count(b"\x1a\x45\xdf\xa3") >= 2, "the run after the reload appended a new WebM stream"

        log = parse_event_log(b"".join(context.store.iter_chunks(rows["events"].object_key)).splitlines(keepends=True))
        kinds = [(e.type, e.detail) for e in log]
        assert kinds[0] == (EventType.OTHER, "recording_started")
        for expected in (EventType.FOCUS_LOST, EventType.FOCUS_GAINED, EventType.TAB_SWITCH, EventType.PASTE):
            assert expected in {k for k, _ in kinds}, kinds
        restart = next(e for e in log if e.detail == "recorder_restarted")
        assert restart.t_ms >= before_reload  # the clock went on from where the first page left it
        paste = next(e for e in log if e.type == EventType.PASTE)
        assert paste.t_ms > restart.t_ms


def attempt_status(context: AppContext, attempt_id: str) -> str:
    with context.db() as db:
        attempt = db.get(EdxAttempt, attempt_id)
        assert attempt is not None
        return attempt.status


@pytest.mark.slow
@pytest.mark.parametrize("screen", [False, True], ids=["webcam", "webcam-and-screen"])
def test_an_open_edx_attempt_records_until_edx_says_submitted(
    context: AppContext, browser: Browser, screen: bool
) -> None:
    """With the exam's `record_screen` rule the page records the screen too (Chromium's fake capture picks the
    whole screen, as `--use-fake-ui-for-media-stream` accepts the prompt)."""
    attempt_id = edx_attempt(context, "created", {"record_screen": screen})
    with BackgroundServer(server_app(context)) as url:
        page = browser.new_context().new_page()
        page.goto(f"{url}/recorder/?attempt={attempt_id}")
        phase(page, "ready")
        page.get_by_role("button", name="Check my camera").click()
        phase(page, "checked")
        page.get_by_role("button", name="Start recording").click()
        phase(page, "recording")
        assert "photo was saved for the identity check" in (page.locator("#photo-note").text_content() or "")
        deadline = time.monotonic() + WAIT_MS / 1000
        while attempt_status(context, attempt_id) != "ready":  # the page told edX it records
            assert time.monotonic() < deadline, "the recorder never sent ready"
            time.sleep(0.2)
        with context.db() as db:
            attempt = db.get(EdxAttempt, attempt_id)
            assert attempt is not None and attempt.session_id is not None
            session_id = attempt.session_id
            attempt.status = "submitted"  # the learner submitted in edX: the next heartbeat ends the recording
            db.commit()
        phase(page, "done")
        page.context.close()
        with context.db() as db:
            media = {m.kind: m.state for m in db.scalars(select(Media).where(Media.session_id == session_id))}
        expected = {"webcam": "complete", "events": "complete", "enrolment_photo": "complete"}
        assert media == expected | ({"screen": "complete"} if screen else {})
        # The fake camera shows the candidate: the photo that passed the check is now their enrolment.
        with context.db() as db:
            session = db.get(ExamSession, session_id)
            assert session is not None
            enrolment = latest_enrolment(db, session.tenant_id, session.candidate_id)
            assert enrolment is not None and enrolment.session_id == session_id and enrolment.kind == "enrolment_photo"
