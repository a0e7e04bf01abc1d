"""edx-proctoring's own REST client against our live server: the proof that edX can use the backend.

The test builds (once, then reuses) a virtual environment with edx-proctoring and edx-rest-api-client at the
versions below plus our `proctor_edx` plugin, under `$PROCTOR_TEST_CACHE` (default
`~/.cache/proctor-pipeline`). Where pip cannot reach an index it is skipped with the reason, except under
`CI`, where it fails. The driver (`edx_driver.py`) loads the backend through its entry point and calls it as
the LMS does; this test checks each answer and what it did to the database and the object store.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from core.lms_tables import EdxAttempt, EdxExam
from core.states import SessionState
from core.tables import Exam, ExamSession, Media
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from tests.openedx.conftest import EdxServer
from tests.review_ui.test_browser import Chromium, chromium  # noqa: F401  (the fixture: Debian's Chromium)
from tests.support.edx_venv import edx_venv

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("edx_driver.py")


def run_recorder(edx: EdxServer, attempt_id: str) -> tuple[str, str]:
    """What the learner's recorder page does: start, get ready, upload a webcam part. (session id, prefix)"""
    started = httpx.post(f"{edx.url}/openedx/recorder/{attempt_id}/start", timeout=60)
    assert started.status_code == 200, started.text
    session_id, token = started.json()["session_id"], started.json()["upload_token"]
    assert httpx.post(f"{edx.url}/openedx/recorder/{attempt_id}/ready").json() == {"status": "ready"}
    part = b"\x1a\x45\xdf\xa3" + bytes(4096)
    put = httpx.put(
        f"{edx.url}/v1/sessions/{session_id}/media/webcam/parts/1",
        content=part,
        headers={"Authorization": f"Bearer {token}", "X-Part-SHA256": hashlib.sha256(part).hexdigest()},
    )
    assert put.status_code == 200, put.text
    with edx.context.db() as db:
        webcam = db.scalar(select(Media).where(Media.session_id == session_id, Media.kind == "webcam"))
        assert webcam is not None
        prefix = webcam.object_key.rsplit("media/", 1)[0]
    edx.context.store.put_bytes(prefix + "results/signals.json", b"{}")  # as the pipeline's results would be
    return session_id, prefix


def erased(edx: EdxServer, session_id: str, prefix: str) -> bool:
    with edx.context.db() as db:
        session = db.get(ExamSession, session_id)
        deleted = session is not None and session.state == SessionState.DELETED
    return (
        deleted
        and not list(edx.context.store.list_objects(prefix))
        and not edx.context.store.list_multipart_uploads(prefix)
    )


@pytest.mark.slow
def test_edx_proctorings_rest_client_drives_the_backend(edx: EdxServer, chromium: Chromium) -> None:  # noqa: F811
    python = edx_venv()
    issued = edx.client(edx.tenant())
    driver = subprocess.Popen(
        [str(python), str(DRIVER), f"{edx.url}/openedx", issued.client_id, issued.client_secret],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert driver.stdin is not None and driver.stdout is not None
    results: dict[str, Any] = {}
    for line in driver.stdout:  # up to the pause, where the learners' recorders run
        record = json.loads(line)
        assert "error" not in record, record
        results[record["call"]] = record["result"]
        if record["call"] == "attempts":
            break
    first, second = results["attempts"]
    sessions = {attempt: run_recorder(edx, attempt) for attempt in (first, second)}
    out, err = driver.communicate("go\n", timeout=300)
    assert driver.returncode == 0, err
    for line in out.splitlines():
        record = json.loads(line)
        assert "error" not in record, record
        results[record["call"]] = record["result"]

    assert results["backend"] == "proctor_edx.backend.ProctorPipelineBackend"
    config = results["get_proctoring_config"]
    assert config["download_url"] == f"{edx.url}/recorder/" and config["name"] == "Proctor Pipeline"
    assert config["rules"]["allow_notes"] == "Paper notes are allowed"
    assert results["get_proctoring_config_fr"]["rules"]["allow_notes"] == "Les notes sur papier sont autorisées"
    exam_id = results["on_exam_saved_create"]
    assert results["on_exam_saved_update"] == exam_id
    assert results["get_exam"]["id"] == exam_id and results["get_exam"]["name"] == "Final exam (v2)"
    assert results["get_exam"]["rules"]["allow_multiple_monitors"] is True
    assert results["register_exam_attempt"] == first and first != second
    assert results["start_exam_attempt"] == "started"
    assert results["get_attempt"]["status"] == "started"
    assert results["get_attempt"]["download_url"] == f"{edx.url}/recorder/?attempt={first}"
    assert results["stop_exam_attempt"] == "submitted"
    assert results["mark_erroneous_exam_attempt"] == "error"
    assert results["remove_exam_attempt"] is True and results["remove_exam_attempt_again"] is True
    assert results["retire_user"] is True

    with edx.context.db() as db:
        exam = db.get(EdxExam, exam_id)
        assert exam is not None and exam.lms_exam_id == 7
        tenant_exam = db.get(Exam, exam.exam_id)
        assert tenant_exam is not None and tenant_exam.policy["looking_away"] == {"yaw_deg": 45.0}
        assert db.scalars(select(EdxAttempt).where(EdxAttempt.edx_exam_pk == exam_id)).all() == []
    assert erased(edx, *sessions[second])  # removed in edX
    assert erased(edx, *sessions[first])  # its learner retired

    instructor = urlsplit(results["get_instructor_url"])
    assert instructor.path == f"/openedx/api/v1/instructor/{issued.client_id}/"
    claims = jwt.decode(parse_qs(instructor.query)["jwt"][0], issued.client_secret, algorithms=["HS256"])
    assert claims["exam_id"] == exam_id and claims["iss"] == issued.client_id
    # The link, opened in a browser against `proctor serve`'s app, signs the course team member into the review
    # UI, on the queue of that exam (its course's other exams, and every other course, out of sight).
    with BackgroundServer(server_app(edx.context)) as served:
        page = chromium.browser.new_context().new_page()
        page.goto(served + results["get_instructor_url"].removeprefix(edx.url))
        with edx.context.db() as db:
            exam = db.get(EdxExam, exam_id)
            assert exam is not None
            our_exam = exam.exam_id
        expect(page).to_have_url(f"{served}/review/queue?exam={our_exam}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        page.context.close()
