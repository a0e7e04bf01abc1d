"""Streaming uploads through the service itself (no HTTP), against the real embedded S3: a file uploaded while it
is recorded, its size and SHA-256 sent only at complete, verified as strictly as a declared one."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from core.context import AppContext
from core.tables import Job
from core.tenants import add_tenant
from ingest.schemas import CompleteRequest, IngestError, SessionCreate
from ingest.uploads import Uploads
from tests.support import media as mf
from tests.support.platform import MIB, declare, session_body

PART = 5 * MIB  # the tests' settings: part_size_bytes


def streaming(kind: str, content_type: str = "video/mp4") -> dict[str, Any]:
    return {"kind": kind, "content_type": content_type, "streaming": True}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def final(data: bytes) -> CompleteRequest:
    return CompleteRequest(size_bytes=len(data), sha256=sha(data))


def register(context: AppContext, uploads: Uploads, *media: dict[str, Any]) -> tuple[str, str]:
    """A new tenant's session declaring ``media``: (tenant id, session id)."""
    with context.db() as db:
        tenant_id = add_tenant(db, f"t-{uuid.uuid4().hex[:10]}", "test platform").id
        db.commit()
    session, _ = uploads.register(tenant_id, SessionCreate.model_validate(session_body(*media)), None)
    return tenant_id, session.id


def send_parts(uploads: Uploads, tenant_id: str, session_id: str, kind: str, data: bytes, numbers: list[int]) -> None:
    for n in numbers:
        part = data[(n - 1) * PART : n * PART]
        stored = uploads.store_part(tenant_id, session_id, kind, n, part, sha(part))
        assert (stored.part_number, stored.size) == (n, len(part))


def refusal(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(IngestError) as refused:
        call(*args)
    return refused.value.status, refused.value.code


@pytest.fixture(scope="module")
def webm(media_dir: Path) -> bytes:
    return mf.vp8_webm(media_dir).read_bytes()


def test_a_streamed_recording_is_verified_and_queued_like_a_declared_one(
    context: AppContext, uploads: Uploads, multipart_video: Path
) -> None:
    data = multipart_video.read_bytes()
    assert 2 * PART < len(data) < 3 * PART, "three parts, the last short"
    tenant_id, session_id = register(context, uploads, streaming("webcam"))
    registered = uploads.get(tenant_id, session_id).media[0]
    assert (registered.streaming, registered.size_bytes, registered.sha256) == (True, None, None)
    assert (registered.part_size, registered.part_count) == (PART, 0)

    send_parts(uploads, tenant_id, session_id, "webcam", data, [1, 2, 3])
    parts = uploads.list_parts(tenant_id, session_id, "webcam")
    assert [p.size for p in parts.received] == [PART, PART, len(data) - 2 * PART]
    assert (parts.part_size, parts.part_count, parts.missing) == (PART, None, [])
    assert uploads.get(tenant_id, session_id).media[0].part_count == 3, "parts received so far"

    done = uploads.complete(tenant_id, session_id, "webcam", final(data))
    assert done.state == "queued"
    media = done.media[0]
    assert (media.state, media.size_bytes, media.sha256, media.part_count) == ("complete", len(data), sha(data), 3)
    assert media.probe is not None and media.probe.codec == "h264" and media.probe.duration_s > 0
    with context.db() as db:
        assert db.scalars(select(Job.kind).where(Job.session_id == session_id)).all() == ["process"]
    # a replay returns the same outcome, and the list of parts is now the whole file's
    assert uploads.complete(tenant_id, session_id, "webcam", final(data)) == done
    assert uploads.list_parts(tenant_id, session_id, "webcam").part_count == 3


def test_a_short_webm_and_its_event_log_stream_in_one_part_each(
    context: AppContext, uploads: Uploads, webm: bytes
) -> None:
    events = b'{"type": "focus_lost", "t_ms": 1000}\n{"type": "paste", "t_ms": 2500}\n'
    tenant_id, session_id = register(
        context, uploads, streaming("webcam", "video/webm"), streaming("events", "application/x-ndjson")
    )
    send_parts(uploads, tenant_id, session_id, "events", events, [1])
    assert uploads.complete(tenant_id, session_id, "events", final(events)).state == "uploading"
    send_parts(uploads, tenant_id, session_id, "webcam", webm, [1])
    done = uploads.complete(tenant_id, session_id, "webcam", final(webm))
    assert done.state == "queued"
    by_kind = {m.kind: m for m in done.media}
    assert by_kind["events"].events_count == 2
    assert by_kind["webcam"].probe is not None and by_kind["webcam"].probe.codec == "vp8"


def test_a_wrong_final_checksum_rejects_the_session(context: AppContext, uploads: Uploads, webm: bytes) -> None:
    tenant_id, session_id = register(context, uploads, streaming("webcam", "video/webm"))
    send_parts(uploads, tenant_id, session_id, "webcam", webm, [1])
    wrong = CompleteRequest(size_bytes=len(webm), sha256="0" * 64)
    assert refusal(uploads.complete, tenant_id, session_id, "webcam", wrong) == (422, "checksum_mismatch")
    session = uploads.get(tenant_id, session_id)
    assert session.state == "rejected" and session.reason is not None and session.reason.code == "checksum_mismatch"
    assert session.media[0].size_bytes is None, "a streaming file shows only verified values"


def test_parts_that_do_not_add_up_to_the_final_size_are_a_size_mismatch(
    context: AppContext, uploads: Uploads, webm: bytes
) -> None:
    tenant_id, session_id = register(context, uploads, streaming("webcam", "video/webm"))
    send_parts(uploads, tenant_id, session_id, "webcam", webm, [1])
    claimed = CompleteRequest(size_bytes=len(webm) + 1, sha256=sha(webm))
    assert refusal(uploads.complete, tenant_id, session_id, "webcam", claimed) == (422, "size_mismatch")
    assert uploads.get(tenant_id, session_id).state == "rejected"


def test_a_gap_is_reported_until_it_is_filled(context: AppContext, uploads: Uploads, multipart_video: Path) -> None:
    data = multipart_video.read_bytes()
    tenant_id, session_id = register(context, uploads, streaming("webcam"))
    send_parts(uploads, tenant_id, session_id, "webcam", data, [1, 3])
    assert uploads.list_parts(tenant_id, session_id, "webcam").missing == [2]
    with pytest.raises(IngestError) as refused:
        uploads.complete(tenant_id, session_id, "webcam", final(data))
    assert (refused.value.code, refused.value.details) == ("parts_missing", {"missing": [2]})
    send_parts(uploads, tenant_id, session_id, "webcam", data, [2])
    assert uploads.complete(tenant_id, session_id, "webcam", final(data)).state == "queued"


def test_a_short_part_that_is_not_the_last_is_named_at_complete(
    context: AppContext, uploads: Uploads, multipart_video: Path
) -> None:
    data = multipart_video.read_bytes()
    tenant_id, session_id = register(context, uploads, streaming("webcam"))
    sent = [data[: PART - 1], data[PART - 1 : 2 * PART - 1]]  # a short first part, then a whole one
    for n, part in enumerate(sent, start=1):
        uploads.store_part(tenant_id, session_id, "webcam", n, part, sha(part))
    with pytest.raises(IngestError) as refused:
        uploads.complete(tenant_id, session_id, "webcam", final(b"".join(sent)))
    assert (refused.value.status, refused.value.code) == (422, "part_size_invalid")
    assert refused.value.details == {"parts": {"1": PART - 1}}


def test_a_part_number_keeps_the_bytes_it_first_arrived_with(
    context: AppContext, uploads: Uploads, multipart_video: Path
) -> None:
    data = multipart_video.read_bytes()
    tenant_id, session_id = register(context, uploads, streaming("webcam"))
    send_parts(uploads, tenant_id, session_id, "webcam", data, [1, 2, 3])
    first = data[:PART]
    other = bytes(reversed(first))
    assert refusal(uploads.store_part, tenant_id, session_id, "webcam", 1, other, sha(other)) == (409, "part_conflict")
    again = uploads.store_part(tenant_id, session_id, "webcam", 1, first, sha(first))
    assert (again.part_number, again.size) == (1, PART), "the same bytes again are answered as stored"
    # the original part is the one assembled: the file verifies against its own SHA-256
    assert uploads.complete(tenant_id, session_id, "webcam", final(data)).state == "queued"


def test_each_streamed_part_needs_its_checksum(context: AppContext, uploads: Uploads, webm: bytes) -> None:
    tenant_id, session_id = register(context, uploads, streaming("webcam", "video/webm"))
    assert refusal(uploads.store_part, tenant_id, session_id, "webcam", 1, webm, None) == (
        422,
        "part_checksum_required",
    )
    assert refusal(uploads.store_part, tenant_id, session_id, "webcam", 1, webm, "0" * 64) == (
        422,
        "part_checksum_mismatch",
    )
    assert uploads.list_parts(tenant_id, session_id, "webcam").received == []


def test_part_numbers_and_sizes_are_bounded(context: AppContext, uploads: Uploads) -> None:
    tenant_id, session_id = register(context, uploads, streaming("webcam"), streaming("events", "application/x-ndjson"))
    assert uploads.part_spec(tenant_id, session_id, "webcam", 1).size == PART
    assert refusal(uploads.part_spec, tenant_id, session_id, "webcam", 0) == (422, "part_number_out_of_range")
    assert refusal(uploads.part_spec, tenant_id, session_id, "webcam", 10_001) == (422, "part_number_out_of_range")
    # the event log's limit (16 MiB by default) ends in its fourth part of 5 MiB
    assert uploads.part_spec(tenant_id, session_id, "events", 4).streaming
    assert refusal(uploads.part_spec, tenant_id, session_id, "events", 5) == (413, "media_too_large")
    too_long = b"x" * (MIB + 1)  # part 4 starts at 15 MiB: one more MiB reaches the limit
    assert refusal(uploads.store_part, tenant_id, session_id, "events", 4, too_long, sha(too_long)) == (
        413,
        "media_too_large",
    )
    assert refusal(uploads.store_part, tenant_id, session_id, "webcam", 1, b"", sha(b"")) == (
        422,
        "part_size_invalid",
    )
    assert refusal(uploads.presign_parts, tenant_id, session_id, "webcam", [1]) == (422, "presign_unavailable")


def test_complete_takes_the_final_size_and_checksum(
    context: AppContext, uploads: Uploads, small_video: Path, webm: bytes
) -> None:
    tenant_id, session_id = register(context, uploads, streaming("webcam", "video/webm"))
    send_parts(uploads, tenant_id, session_id, "webcam", webm, [1])
    assert refusal(uploads.complete, tenant_id, session_id, "webcam") == (422, "final_checksum_required")

    declared = small_video.read_bytes()
    tenant_id, session_id = register(context, uploads, declare("webcam", small_video))
    uploads.store_part(tenant_id, session_id, "webcam", 1, declared, None)
    other = CompleteRequest(size_bytes=len(declared), sha256="0" * 64)
    assert refusal(uploads.complete, tenant_id, session_id, "webcam", other) == (422, "declaration_mismatch")
    assert uploads.complete(tenant_id, session_id, "webcam", final(declared)).state == "queued"


@pytest.mark.parametrize(
    ("media", "says"),
    [
        (streaming("enrolment_photo", "image/jpeg"), "cannot be streamed"),
        (streaming("webcam") | {"size_bytes": 10}, "leave them out"),
        ({"kind": "webcam", "content_type": "video/mp4"}, "streaming: true"),
    ],
)
def test_a_declaration_is_streaming_or_sized(media: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        SessionCreate.model_validate(session_body(media))
