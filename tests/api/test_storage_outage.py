"""Object storage that goes down in the middle of an upload: 503 `storage_unavailable` with `Retry-After`,
never a bare 500, nothing stored is lost, and the upload resumes once storage is back (real SeaweedFS,
stopped and started again)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.tables import ExamSession
from tests.support.platform import MIB, Api, Caller, declare, session_body
from tests.support.s3_outage import RestartableS3, platform_on_restartable_s3


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RestartableS3, Api]]:
    with platform_on_restartable_s3(tmp_path_factory.mktemp("outage")) as running:
        yield running


@pytest.fixture
def caller(platform: tuple[RestartableS3, Api]) -> Iterator[Caller]:
    _, api = platform
    _, key = api.tenant()
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        yield Caller(http)


def assert_storage_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert body["code"] == "storage_unavailable"
    assert body["details"] == {"retry_after_s": 5}
    assert "retry after 5 s" in body["detail"]


def test_storage_down_mid_upload_answers_503_and_the_upload_resumes(
    platform: tuple[RestartableS3, Api], caller: Caller, multipart_video: Path
) -> None:
    s3, api = platform
    data = multipart_video.read_bytes()
    session = caller.register(session_body(declare("webcam", multipart_video))).json()
    sid, base = session["id"], f"/v1/sessions/{session['id']}/media/webcam"
    assert caller.put_part(sid, "webcam", 1, data[: 5 * MIB]).status_code == 200

    s3.stop()
    try:
        assert_storage_unavailable(caller.put_part(sid, "webcam", 2, data[5 * MIB : 10 * MIB]))
        assert_storage_unavailable(caller.http.get(f"{base}/parts"))
        assert_storage_unavailable(caller.complete(sid, "webcam"))
        assert_storage_unavailable(caller.register(session_body(declare("webcam", multipart_video))))
        # Presigning needs no call to storage: the URLs are signed here, and work once storage is back.
        assert caller.http.post(f"{base}/parts/presign", json={"part_numbers": [2]}).status_code == 200
        with api.context.db() as db:
            row = db.get(ExamSession, sid)
            assert row is not None and row.state == session["state"], "an outage changes no session's state"
    finally:
        s3.start()

    parts = caller.http.get(f"{base}/parts").json()
    assert parts["missing"] == [2, 3], "the part stored before the outage is still there"
    for n in (2, 3):
        assert caller.put_part(sid, "webcam", n, data[(n - 1) * 5 * MIB : n * 5 * MIB]).status_code == 200
    done = caller.complete(sid, "webcam")
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "queued"


def test_the_503_is_in_the_openapi_document(platform: tuple[RestartableS3, Api]) -> None:
    _, api = platform
    document = httpx.get(f"{api.url}/openapi.json").json()
    put = document["paths"]["/v1/sessions/{session_id}/media/{kind}/parts/{part_number}"]["put"]
    unavailable = put["responses"]["503"]
    assert "application/problem+json" in unavailable["content"]
    assert "Retry-After" in unavailable["headers"]
