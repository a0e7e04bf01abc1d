"""`proctor ingest` and its client against the real API while object storage (real SeaweedFS) goes down and
comes back: waits on `Retry-After`, distinct exit codes, and the same command resuming the same session."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ingest.client import IngestClient, IngestRequestError, LocalMedia, Waiting, idempotency_key_for, upload_session
from proctor.cli import app
from proctor.upload_cli import EXIT_REFUSED, EXIT_UNAVAILABLE
from tests.support import media as mf
from tests.support.platform import MIB, Api
from tests.support.s3_outage import RestartableS3, platform_on_restartable_s3

runner = CliRunner()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RestartableS3, Api]]:
    with platform_on_restartable_s3(tmp_path_factory.mktemp("outage")) as running:
        yield running


@pytest.fixture
def key(platform: tuple[RestartableS3, Api]) -> str:
    return platform[1].tenant()[1]


def ingest_args(video: Path, key: str, *extra: str) -> list[str]:
    return ["ingest", str(video), "--exam", "exam-outage", "--candidate", "c-1", "--api-key", key, *extra]


def env(api: Api) -> dict[str, str]:
    return {"PROCTOR_API_URL": api.url, "PROCTOR_DATA_DIR": str(api.context.settings.data_dir)}


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


def test_storage_down_mid_upload_exits_4_and_the_same_command_resumes_it(
    platform: tuple[RestartableS3, Api], key: str, multipart_video: Path
) -> None:
    s3, api = platform
    # The first run got as far as part 1 of 3 (registered exactly as the command registers it) ...
    media = LocalMedia.from_path("webcam", multipart_video)
    attempt = "a-" + media.sha256[:16]
    with IngestClient(api.url, key) as client:
        session = client.register(
            exam_id="exam-outage",
            candidate_id="c-1",
            attempt_id=attempt,
            started_at=datetime.fromtimestamp(multipart_video.stat().st_mtime, UTC),
            media=[media],
            idempotency_key=idempotency_key_for("exam-outage", "c-1", attempt, [media]),
        )
        part = multipart_video.read_bytes()[: 5 * MIB]
        client.request("PUT", f"/v1/sessions/{session['id']}/media/webcam/parts/1", content=part)
    # ... when storage went down.
    s3.stop()
    try:
        failed = runner.invoke(app, ingest_args(multipart_video, key, "--retry-for", "6"), env=env(api))
    finally:
        s3.start()
    assert failed.exit_code == EXIT_UNAVAILABLE, failed.output
    assert "storage_unavailable" in failed.output and "run the same command again later" in failed.output
    assert "retrying request" not in failed.output, "no log line per retry"
    assert len(failed.output.splitlines()) < 10, failed.output

    resumed = runner.invoke(app, ingest_args(multipart_video, key), env=env(api))
    assert resumed.exit_code == 0, resumed.output
    assert f"session {session['id']}" in resumed.output and "queued" in resumed.output


def test_the_client_waits_out_an_outage_on_retry_after_and_completes(
    platform: tuple[RestartableS3, Api], key: str, multipart_video: Path
) -> None:
    s3, api = platform
    waits: list[Waiting] = []
    outcome: dict[str, Any] = {}

    def upload() -> None:
        with IngestClient(api.url, key, on_wait=lambda _request, w: waits.append(w) if w else None) as client:
            try:
                outcome["session"] = upload_session(
                    client, webcam=multipart_video, exam_id="exam-wait", candidate_id="c-2", parallel=2
                )
            except Exception as exc:  # reported below, in the test's thread
                outcome["error"] = exc

    s3.stop()
    try:
        uploader = threading.Thread(target=upload)
        uploader.start()
        deadline = time.monotonic() + 30
        while not waits and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        s3.start()  # from this thread: the server lives as long as the thread that started it
    uploader.join(timeout=120)
    assert not uploader.is_alive()
    assert "error" not in outcome, outcome
    assert outcome["session"]["state"] == "queued"
    assert waits, "the client waited for storage"
    assert {w.reason for w in waits} == {"503 storage_unavailable"}
    assert all(w.delay_s >= 5 for w in waits), "never sooner than Retry-After"


def test_a_refusal_is_sent_once_and_exits_3(platform: tuple[RestartableS3, Api], key: str, tmp_path: Path) -> None:
    _, api = platform
    transport = CountingTransport()
    with IngestClient(api.url, key, transport=transport) as client, pytest.raises(IngestRequestError) as refused:
        client.session("0" * 32)
    assert refused.value.status == 404 and refused.value.refused
    assert transport.sent == [f"GET /v1/sessions/{'0' * 32}"], "a 4xx is not retried"

    bad = mf.random_bytes(tmp_path).rename(tmp_path / "broken.mp4")
    result = runner.invoke(app, ingest_args(bad, key), env=env(api))
    assert result.exit_code == EXIT_REFUSED, result.output
    assert "refused" in result.output and "not_a_video" in result.output


def test_the_exit_codes_are_in_the_help() -> None:
    shown = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    text = " ".join(shown.output.split())
    for documented in ("2 usage error", "3 refused by the server", "4 the server failed or could not be reached"):
        assert documented in text, text
