"""Open edX to a reviewer's seek, end to end: the LMS's calls, the candidate's browser, processing, review.

edX's side is driven over HTTP exactly as `BaseRestProctoringProvider` calls us (tests/openedx/test_edx_client.py
drives edX's own client; here the point is the candidate's browser). Chromium's fake camera plays a `.y4m`
built from real faces (`tests.support.fake_camera`): the candidate, then 5 s where the face leaves (a cup, a
cat), then the candidate again. The learner opens the recorder at the URL edX sends them to, passes the camera
check, records about a minute through a network outage and a page reload, and edX submits the exam. The
session is then processed like any other: a no_face flag must cover the stretch where the face left, at the
time it left, and a course team member, signed in from edX's instructor dashboard link, seeks the recording to
that flag.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from core.context import AppContext
from core.lms_tables import EdxAttempt
from core.tables import ExamSession, FlagSegment, Tenant
from core.tenants import add_tenant
from ingest.event_log import parse_event_log
from openedx.clients import IssuedClient, add_client
from pipelines.analysis import AnalysisConfig
from pipelines.fanout import LocalFanout
from pipelines.jobs import JobQueue
from pipelines.worker import Worker
from proctor.local_server import BackgroundServer
from proctor.wiring import secrets, server_app
from storage.keys import SessionPrefix
from tests.openedx.conftest import edx_http
from tests.recorder.conftest import chromium_with_camera
from tests.recorder.test_recorder_browser import WAIT_MS, phase
from tests.support.fake_camera import FakeCamera, face_leaves_camera

pytestmark = pytest.mark.slow

COURSE = "course-v1:MITx+6.86x+2026_T1"
TOLERANCE_S = 1.5  # the flag's edges against the camera's: detector sampling and Chromium's capture start


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'proctor.db'}"  # a browser test: one database is enough


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> FakeCamera:
    return face_leaves_camera(tmp_path_factory.mktemp("camera"))


@pytest.fixture(scope="module")
def browser(camera: FakeCamera) -> Iterator[Browser]:
    with chromium_with_camera(camera.path) as launched:
        yield launched


def edx_client(context: AppContext) -> IssuedClient:
    with context.db() as db:
        tenant = add_tenant(db, f"mitx-{uuid.uuid4().hex[:6]}", "MITx on Open edX")
        issued = add_client(db, secrets(context.settings), db.get(Tenant, tenant.id), "https://lms.example.org")  # type: ignore[arg-type]
        db.commit()
        return issued


def instructor_url(url: str, issued: IssuedClient) -> str:
    """The link edX's `get_instructor_url` makes for a course team member (same claims, HS256, the secret)."""
    claims = {
        "course_id": COURSE,
        "user": {"id": 9, "full_name": "Course Staff", "email": "staff@mitx.example"},
        "iss": issued.client_id,
        "jti": uuid.uuid4().hex,
        "exp": time.time() + 60,
    }
    return f"{url}/openedx/api/v1/instructor/{issued.client_id}/?jwt={jwt.encode(claims, issued.client_secret)}"


RECORDED_MS = """(sid) => new Promise((resolve, reject) => {
  const open = indexedDB.open("proctor-recorder");
  open.onsuccess = () => {
    const get = open.result.transaction("sessions").objectStore("sessions").get(sid);
    get.onsuccess = () => { resolve(get.result ? get.result.clockMs : 0); open.result.close(); };
    get.onerror = () => reject(get.error);
  };
  open.onerror = () => reject(open.error);
})"""


def recorded_ms(page: Page, session_id: str) -> int:
    """How far the recording's clock has gone, as the page keeps it in IndexedDB."""
    value: int = page.evaluate(RECORDED_MS, session_id)
    return value


def wait_recorded(page: Page, session_id: str, ms: int) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while recorded_ms(page, session_id) < ms:
        assert time.monotonic() < deadline, f"the recording never reached {ms} ms"
        time.sleep(0.25)


def wait_attempt(edx: httpx.Client, exam_id: str, attempt_id: str, status: str) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while (now := edx.get(f"/api/v1/exam/{exam_id}/attempt/{attempt_id}/").json()["status"]) != status:
        assert time.monotonic() < deadline, f"the attempt stayed {now!r}, never {status!r}"
        time.sleep(0.5)


def seek_to_flag(page: Page, index: int, start_s: float) -> None:
    """Click the flag on the timeline: the review UI puts the video 2 s before it."""
    page.click(f"#timeline .flag[data-index='{index}']")
    page.wait_for_function(
        "(t) => Math.abs(document.getElementById('webcam').currentTime - t) < 0.5", arg=max(0.0, start_s - 2)
    )


def test_a_learner_recorded_from_open_edx_is_flagged_when_the_face_leaves_and_staff_seek_to_it(
    context: AppContext, browser: Browser, camera: FakeCamera, tmp_path: Path
) -> None:
    issued = edx_client(context)
    with BackgroundServer(server_app(context)) as url, edx_http(url, issued) as edx:
        exam = edx.post(
            "/api/v1/exam/",
            json={"id": 41, "course_id": COURSE, "name": "Final exam", "is_proctored": True, "is_practice": False,
                  "rules": {"allow_notes": False}, "rule_summary": ""},
        )  # fmt: skip
        assert exam.status_code == 200, exam.text
        exam_id = exam.json()["id"]
        registered = edx.post(
            f"/api/v1/exam/{exam_id}/attempt/", json={"user_id": "a1b2c3d4", "user_name": "Ada", "status": "created"}
        )
        assert registered.status_code == 200, registered.text  # edX refuses anything but 200
        attempt_id = registered.json()["id"]
        download_url = edx.get(f"/api/v1/exam/{exam_id}/attempt/{attempt_id}/").json()["download_url"]

        # The learner's browser: edX sends them to the recorder; they check the camera and start.
        learner = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
        opened = time.monotonic()
        learner.goto(download_url)
        phase(learner, "ready")
        camera_on_by = time.monotonic()  # the camera opened between `opened` and now
        learner.get_by_role("button", name="Check my camera").click()
        phase(learner, "checked")
        learner.get_by_role("button", name="Start recording").click()
        phase(learner, "recording")
        recording_from = time.monotonic()
        wait_attempt(edx, exam_id, attempt_id, "ready")  # the recorder told edX: the learner may start
        with context.db() as db:
            attempt = db.get(EdxAttempt, attempt_id)
            assert attempt is not None and attempt.session_id is not None
            session_id = attempt.session_id
        assert edx.patch(f"/api/v1/exam/{exam_id}/attempt/{attempt_id}/", json={"status": "started"}).status_code == 200

        wait_recorded(learner, session_id, 20_000)
        learner.context.set_offline(True)  # the learner's network drops for a while
        phase(learner, "offline")
        time.sleep(5)
        learner.context.set_offline(False)
        phase(learner, "recording")
        wait_recorded(learner, session_id, 32_000)
        learner.reload()  # and they reload the page mid-exam
        phase(learner, "recording")
        wait_recorded(learner, session_id, 60_000)
        assert (
            edx.patch(f"/api/v1/exam/{exam_id}/attempt/{attempt_id}/", json={"status": "submitted"}).status_code == 200
        )
        phase(learner, "done")  # the next heartbeat reads `submitted`: the upload completes
        assert "arrived safely" in (learner.locator("#status").text_content() or "")
        learner.context.close()

        fanout = LocalFanout(AnalysisConfig(), context.location)  # what `proctor worker` does, in this process
        assert Worker(context.db, context.store, fanout, JobQueue(context.db), worker_id="e2e").run_one(session_id)

        with context.db() as db:
            session = db.get(ExamSession, session_id)
            assert session is not None and session.duration_s is not None
            assert session.state == "processed", session.state
            duration_s, prefix = (
                session.duration_s,
                SessionPrefix(session.tenant.slug, session.exam.external_id, session.id),
            )
            events_key = next(m.object_key for m in session.media if m.kind == "events")
            flags = list(
                db.scalars(
                    select(FlagSegment).where(FlagSegment.session_id == session_id).order_by(FlagSegment.start_ms)
                )
            )
        # The recording lasts as long as the recorder's clock ran, across the outage and the reload.
        log = parse_event_log(b"".join(context.store.iter_chunks(events_key)).splitlines(keepends=True))
        recorded_s = next(e.t_ms for e in log if e.detail == "recording_stopped") / 1000
        assert abs(duration_s - recorded_s) < 2.0, (duration_s, recorded_s)
        assert context.store.stat(prefix.seekable_key("webcam")) is not None, "a seekable copy for the reviewer"

        # The face left the camera `no_face[0]` s into the camera's file; the recording began between
        # `recording_from - camera_on_by` and `recording_from - opened` seconds into it.
        late, early = recording_from - camera_on_by, recording_from - opened
        expected_start = (camera.no_face[0] - early - TOLERANCE_S, camera.no_face[0] - late + TOLERANCE_S)
        no_face = [f for f in flags if f.kind == "no_face"]
        first = no_face[0] if no_face else None
        assert first is not None, [(f.kind, f.start_ms, f.end_ms) for f in flags]
        assert expected_start[0] <= first.start_ms / 1000 <= expected_start[1], (first.start_ms, expected_start)
        stretch = camera.no_face[1] - camera.no_face[0]
        assert abs((first.end_ms - first.start_ms) / 1000 - stretch) <= 2 * TOLERANCE_S, (first.start_ms, first.end_ms)

        # Course staff follow edX's instructor dashboard link into the review UI and seek to the flag.
        staff = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        staff.goto(instructor_url(url, issued))
        expect(staff).to_have_url(f"{url}/review/queue")  # the course's queue
        staff.click(f"tr[data-session='{session_id}'] button.claim")
        staff.wait_for_function("() => document.getElementById('webcam').readyState >= 1")
        shown_s: float = staff.evaluate("() => document.getElementById('webcam').duration")
        assert abs(shown_s - duration_s) < 1.0, (shown_s, duration_s)  # a duration: the copy has one
        seek_to_flag(staff, flags.index(first), first.start_ms / 1000)
        seekable_to: float = staff.evaluate(
            "() => { const s = document.getElementById('webcam').seekable; return s.length ? s.end(0) : 0; }"
        )
        assert seekable_to >= duration_s - 1.0
        staff.context.close()
