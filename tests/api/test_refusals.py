"""Bad input over the /v1 API: each gets a specific problem code and message, and nothing stored is lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.client import IngestClient, IngestRequestError, upload_session
from tests.support import media as mf
from tests.support.platform import Api, Caller, declare, problem, session_body


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
