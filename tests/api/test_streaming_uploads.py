"""Streaming uploads over real HTTP: parts sent while recording, each with its SHA-256, and the file's size and
SHA-256 sent to complete."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.support.platform import MIB, Caller, declare, problem, session_body


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def streaming_session(caller: Caller) -> str:
    created = caller.register(session_body({"kind": "webcam", "content_type": "video/mp4", "streaming": True}))
    assert created.status_code == 201, created.text
    media = created.json()["media"][0]
    assert (media["streaming"], media["size_bytes"], media["sha256"], media["part_size"]) == (True, None, None, 5 * MIB)
    sid: str = created.json()["id"]
    return sid


def complete(caller: Caller, sid: str, body: dict[str, Any] | None) -> Any:
    return caller.http.post(f"/v1/sessions/{sid}/media/webcam/complete", json=body)


def test_a_recording_streamed_in_checksummed_parts_is_queued(caller: Caller, multipart_video: Path) -> None:
    data = multipart_video.read_bytes()
    sid = streaming_session(caller)
    for n, start in enumerate(range(0, len(data), 5 * MIB), start=1):
        part = data[start : start + 5 * MIB]
        assert caller.put_part(sid, "webcam", n, part, **{"X-Part-SHA256": sha(part)}).status_code == 200
    assert problem(complete(caller, sid, None)) == (422, "final_checksum_required")
    final = {"size_bytes": len(data), "sha256": sha(data)}
    done = complete(caller, sid, final)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "queued"
    media = done.json()["media"][0]
    assert (media["size_bytes"], media["sha256"], media["part_count"]) == (len(data), sha(data), 3)
    again = complete(caller, sid, final)
    assert again.status_code == 200 and again.json() == done.json()
    assert problem(complete(caller, sid, {"size_bytes": len(data), "sha256": "0" * 64})) == (
        422,
        "declaration_mismatch",
    )


def test_a_part_without_its_checksum_is_refused(caller: Caller, small_video: Path) -> None:
    sid = streaming_session(caller)
    assert problem(caller.put_part(sid, "webcam", 1, small_video.read_bytes())) == (422, "part_checksum_required")
    assert caller.http.get(f"/v1/sessions/{sid}/media/webcam/parts").json()["received"] == []


def test_a_replayed_part_with_other_bytes_is_refused_and_the_first_kept(caller: Caller, small_video: Path) -> None:
    data = small_video.read_bytes()
    sid = streaming_session(caller)
    first = caller.put_part(sid, "webcam", 1, data, **{"X-Part-SHA256": sha(data)})
    assert first.status_code == 200
    other = data[:-1]
    refused = caller.put_part(sid, "webcam", 1, other, **{"X-Part-SHA256": sha(other)})
    assert problem(refused) == (409, "part_conflict")
    replay = caller.put_part(sid, "webcam", 1, data, **{"X-Part-SHA256": sha(data)})
    assert replay.status_code == 200 and replay.json() == first.json()
    parts = caller.http.get(f"/v1/sessions/{sid}/media/webcam/parts").json()
    assert [(p["part_number"], p["size"]) for p in parts["received"]] == [(1, len(data))]
    assert complete(caller, sid, {"size_bytes": len(data), "sha256": sha(data)}).json()["state"] == "queued"


def test_a_gap_and_a_wrong_checksum_over_http(caller: Caller, multipart_video: Path) -> None:
    data = multipart_video.read_bytes()
    sid = streaming_session(caller)
    for n in (1, 3):
        part = data[(n - 1) * 5 * MIB : n * 5 * MIB]
        assert caller.put_part(sid, "webcam", n, part, **{"X-Part-SHA256": sha(part)}).status_code == 200
    parts = caller.http.get(f"/v1/sessions/{sid}/media/webcam/parts").json()
    assert (parts["missing"], parts["part_count"]) == ([2], None)
    gap = complete(caller, sid, {"size_bytes": len(data), "sha256": sha(data)})
    assert problem(gap) == (422, "parts_missing") and gap.json()["details"] == {"missing": [2]}
    part = data[5 * MIB : 10 * MIB]
    assert caller.put_part(sid, "webcam", 2, part, **{"X-Part-SHA256": sha(part)}).status_code == 200
    wrong = complete(caller, sid, {"size_bytes": len(data), "sha256": "f" * 64})
    assert problem(wrong) == (422, "checksum_mismatch")
    assert caller.http.get(f"/v1/sessions/{sid}").json()["state"] == "rejected"


def test_a_declared_files_complete_body_must_match_its_declaration(caller: Caller, small_video: Path) -> None:
    session = caller.register(session_body(declare("webcam", small_video))).json()
    assert caller.put_part(session["id"], "webcam", 1, small_video.read_bytes()).status_code == 200
    mismatch = {"size_bytes": small_video.stat().st_size + 1, "sha256": sha(small_video.read_bytes())}
    assert problem(complete(caller, session["id"], mismatch)) == (422, "declaration_mismatch")
    assert problem(complete(caller, session["id"], mismatch | {"extra": 1})) == (422, "validation_error")
    matching = {"size_bytes": small_video.stat().st_size, "sha256": sha(small_video.read_bytes())}
    assert complete(caller, session["id"], matching).json()["state"] == "queued"


def test_enrolment_media_cannot_stream(caller: Caller) -> None:
    refused = caller.register(
        session_body(
            {"kind": "webcam", "content_type": "video/mp4", "streaming": True},
            {"kind": "enrolment_photo", "content_type": "image/jpeg", "streaming": True},
        )
    )
    assert problem(refused) == (422, "validation_error")
    assert "enrolment_photo cannot be streamed" in refused.json()["detail"]
