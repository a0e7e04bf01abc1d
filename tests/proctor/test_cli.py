"""The `proctor` commands of the ingest stage, run in-process against a live API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from proctor.cli import app
from tests.support import media as mf
from tests.support.platform import Api

runner = CliRunner()


@pytest.fixture
def env(settings: Settings, api: Api) -> dict[str, str]:
    return {
        "PROCTOR_DATA_DIR": str(settings.data_dir),
        "PROCTOR_DATABASE_URL": settings.resolved_database_url,
        "PROCTOR_API_URL": api.url,
    }


def test_tenants_add_prints_a_working_key_once(env: dict[str, str], api: Api, tmp_path: Path) -> None:
    added = runner.invoke(app, ["tenants", "add", "uni-cli", "--name", "University"], env=env)
    assert added.exit_code == 0, added.output
    key = added.output.strip().splitlines()[-1]
    assert key.startswith("pp_")
    again = runner.invoke(app, ["tenants", "add", "uni-cli"], env=env)
    assert again.exit_code != 0 and "already exists" in again.output
    listed = runner.invoke(app, ["tenants", "list"], env=env)
    assert "uni-cli" in listed.output

    video = mf.h264_mp4(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "tab_switch", "t_ms": 400}\n')
    args = [
        "ingest",
        str(video),
        "--exam",
        "exam-9",
        "--candidate",
        "c-42",
        "--events",
        str(events),
        "--api-key",
        key,
    ]
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert "queued" in first.output
    session_id = first.output.split("session ", 1)[1].split()[0]
    # running the same command again resumes (here: finds it complete) instead of creating a second session
    second = runner.invoke(app, args, env=env)
    assert second.exit_code == 0 and session_id in second.output

    status = runner.invoke(app, ["status", session_id, "--api-key", key, "--json"], env=env)
    body = json.loads(status.output)
    assert body["state"] == "queued" and {m["kind"] for m in body["media"]} == {"webcam", "events"}


def test_ingest_reports_a_refusal_with_its_code(env: dict[str, str], api: Api, tmp_path: Path) -> None:
    _, key = api.tenant()
    bad = mf.random_bytes(tmp_path).rename(tmp_path / "broken.mp4")
    result = runner.invoke(app, ["ingest", str(bad), "--exam", "e", "--candidate", "c", "--api-key", key], env=env)
    assert result.exit_code == 3  # refused by the server (2 is typer's usage error)
    assert "not_a_video" in result.output


def test_status_of_another_tenants_session_is_not_found(env: dict[str, str], api: Api) -> None:
    _, key = api.tenant()
    result = runner.invoke(app, ["status", "0" * 32, "--api-key", key], env=env)
    assert result.exit_code == 3 and "session_not_found" in result.output


def test_ingest_sends_an_enrolment_photo_and_shows_a_refused_one(env: dict[str, str], api: Api, tmp_path: Path) -> None:
    """`proctor ingest --enrolment-photo`: an accepted photo is stored for the candidate; a refused one is shown
    with its code while the exam recording goes through."""
    from tests.api.faces import astronaut, wall, write_photo

    _, key = api.tenant()
    video = mf.h264_mp4(tmp_path)
    runner = CliRunner()
    good = write_photo(tmp_path / "me.jpg", astronaut())
    args = ["ingest", str(video), "--exam", "e-1", "--candidate", "c-7", "--api-key", key]
    accepted = runner.invoke(app, [*args, "--attempt", "a1", "--enrolment-photo", str(good)], env=env)
    assert accepted.exit_code == 0, accepted.output
    assert "enrolment_photo" in accepted.output and "queued" in accepted.output
    empty = write_photo(tmp_path / "wall.jpg", wall())
    refused = runner.invoke(app, [*args, "--attempt", "a2", "--enrolment-photo", str(empty)], env=env)
    assert refused.exit_code == 0, refused.output
    assert "enrolment_no_face" in refused.output and "queued" in refused.output
