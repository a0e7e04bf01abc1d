"""An enrolment photo added to a session after its registration (`POST /v1/sessions/{id}/media`), as a browser
recorder does once its camera check took the candidate's picture: uploaded and completed like a file declared at
registration, it becomes the candidate's enrolment; every refusal says why, and a session's upload token may add
it, another session's may not."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from sqlalchemy import select

from core.tables import CandidateEnrolment
from ingest.schemas import IngestError, MediaDeclaration, SessionCreate
from ingest.uploads import Uploads
from proctor.samples import build_sample_session
from proctor.wiring import upload_limits
from tests.api import faces
from tests.recorder.conftest import jpeg, scene_name
from tests.support.platform import MIB, Api, Caller, declare, problem, session_body

PHOTO = "enrolment_photo"


@pytest.fixture(scope="module")
def camera_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JPEG of the candidate as a webcam shows her: the middle frame of a `proctor.samples` recording's
    candidate scene, the picture the recorder's camera check passes and then sends."""
    fps = 10
    sample = build_sample_session(tmp_path_factory.mktemp("sample"), duration_s=12, fps=fps, codec="vp8")
    candidate = next(iv for iv in sample.intervals if scene_name(iv.what, iv.faces) == "candidate")
    middle = round((candidate.start_s + candidate.end_s) / 2 * fps)
    with av.open(str(sample.video_path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    path = tmp_path_factory.mktemp("photo") / "camera.jpg"
    path.write_bytes(jpeg(np.ascontiguousarray(frames[middle], np.uint8)))
    return path


def photo(path: Path, **over: Any) -> dict[str, Any]:
    return declare(PHOTO, path, "image/jpeg", **over)


def streaming_webcam() -> dict[str, Any]:
    return {"kind": "webcam", "content_type": "video/webm", "streaming": True}


def registered(caller: Caller, *media: dict[str, Any]) -> str:
    created = caller.register(session_body(*(media or (streaming_webcam(),))))
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]
    return sid


def media_of(session: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(m for m in session["media"] if m["kind"] == kind)


def upload_photo(http: httpx.Client, sid: str, path: Path) -> httpx.Response:
    """Part 1 with its SHA-256, then complete: what the recorder page sends after declaring the photo."""
    data = path.read_bytes()
    sent = http.put(
        f"/v1/sessions/{sid}/media/{PHOTO}/parts/1",
        content=data,
        headers={"X-Part-SHA256": hashlib.sha256(data).hexdigest()},
    )
    assert sent.status_code == 200, sent.text
    return http.post(f"/v1/sessions/{sid}/media/{PHOTO}/complete")


def new_token(caller: Caller, sid: str) -> str:
    issued = caller.http.post(f"/v1/sessions/{sid}/upload-tokens")
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["token"]
    return token


def as_browser(api: Api, token: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)


def test_a_photo_added_after_registration_becomes_the_candidates_enrolment(
    api: Api, caller: Caller, tenant: tuple[str, str], camera_photo: Path, small_video: Path
) -> None:
    sid = registered(caller, declare("webcam", small_video))
    assert caller.http.get("/v1/candidates/cand-7/enrolment").json()["enrolled"] is False

    added = caller.http.post(f"/v1/sessions/{sid}/media", json=photo(camera_photo))
    assert added.status_code == 201, added.text
    declared = media_of(added.json(), PHOTO)
    assert declared["state"] == "pending" and declared["size_bytes"] == camera_photo.stat().st_size
    assert declared["part_count"] == 1 and added.json()["state"] == "uploading"

    done = upload_photo(caller.http, sid, camera_photo)
    assert done.status_code == 200, done.text
    accepted = media_of(done.json(), PHOTO)
    assert accepted["state"] == "complete" and accepted["enrolment"]["frames"] == 1
    assert done.json()["state"] == "uploading"  # the exam waits for its recording, not for the photo

    shown = caller.http.get("/v1/candidates/cand-7/enrolment").json()
    assert shown["enrolled"] and shown["session_id"] == sid and shown["kind"] == PHOTO
    with api.context.db() as db:
        (row,) = db.scalars(select(CandidateEnrolment).where(CandidateEnrolment.tenant_id == tenant[0]))
    # Stored under the candidate, with the key a photo declared at registration gets.
    assert row.object_key.endswith(f"/_candidates/cand-7/enrolment/{sid}-{PHOTO}")
    assert api.context.store.stat(row.object_key) is not None

    webcam = small_video.read_bytes()
    assert caller.put_part(sid, "webcam", 1, webcam).status_code == 200
    assert caller.complete(sid, "webcam").json()["state"] == "queued"


def test_the_same_declaration_again_returns_the_session_and_another_is_refused(
    caller: Caller, camera_photo: Path, tmp_path: Path
) -> None:
    sid = registered(caller)
    assert caller.http.post(f"/v1/sessions/{sid}/media", json=photo(camera_photo)).status_code == 201
    again = caller.http.post(f"/v1/sessions/{sid}/media", json=photo(camera_photo))
    assert again.status_code == 200, again.text
    assert [m["kind"] for m in again.json()["media"]].count(PHOTO) == 1

    other = faces.write_photo(tmp_path / "other.jpg", faces.astronaut())
    refused = caller.http.post(f"/v1/sessions/{sid}/media", json=photo(other))
    assert problem(refused) == (409, "media_already_declared")
    assert refused.json()["details"] == {"kind": PHOTO, "state": "pending"}

    # Completed, it is still the same one: a repeat is answered with the session, not a second upload.
    assert upload_photo(caller.http, sid, camera_photo).status_code == 200
    assert caller.http.post(f"/v1/sessions/{sid}/media", json=photo(camera_photo)).status_code == 200
    assert problem(caller.http.post(f"/v1/sessions/{sid}/media", json=photo(other))) == (409, "media_already_declared")


def test_a_photo_declared_at_registration_is_not_replaced(caller: Caller, camera_photo: Path, tmp_path: Path) -> None:
    sid = registered(caller, streaming_webcam(), photo(camera_photo))
    other = faces.write_photo(tmp_path / "other.jpg", faces.astronaut())
    assert problem(caller.http.post(f"/v1/sessions/{sid}/media", json=photo(other))) == (409, "media_already_declared")
    assert caller.http.post(f"/v1/sessions/{sid}/media", json=photo(camera_photo)).status_code == 200


def test_a_session_no_longer_uploading_takes_no_photo(caller: Caller, camera_photo: Path, small_video: Path) -> None:
    queued = registered(caller, declare("webcam", small_video))
    assert caller.put_part(queued, "webcam", 1, small_video.read_bytes()).status_code == 200
    assert caller.complete(queued, "webcam").json()["state"] == "queued"
    refused = caller.http.post(f"/v1/sessions/{queued}/media", json=photo(camera_photo))
    assert problem(refused) == (409, "session_not_uploading")
    assert refused.json()["details"] == {"state": "queued"}

    rejected = registered(caller, declare("webcam", small_video, sha256="0" * 64))
    assert caller.put_part(rejected, "webcam", 1, small_video.read_bytes()).status_code == 200
    assert problem(caller.complete(rejected, "webcam")) == (422, "checksum_mismatch")
    assert problem(caller.http.post(f"/v1/sessions/{rejected}/media", json=photo(camera_photo))) == (
        409,
        "session_not_uploading",
    )

    erased = registered(caller)
    assert caller.http.delete(f"/v1/sessions/{erased}").status_code == 200
    assert problem(caller.http.post(f"/v1/sessions/{erased}/media", json=photo(camera_photo))) == (
        410,
        "session_deleted",
    )
    assert problem(caller.http.post("/v1/sessions/no-such-session/media", json=photo(camera_photo))) == (
        404,
        "session_not_found",
    )


@pytest.mark.parametrize(
    ("declaration", "expected"),
    [
        ({"kind": "webcam", "size_bytes": 1000, "sha256": "a" * 64, "content_type": "video/mp4"}, "media_not_addable"),
        ({"kind": "events", "content_type": "application/x-ndjson", "streaming": True}, "media_not_addable"),
        ({"kind": PHOTO, "content_type": "image/jpeg", "streaming": True}, "validation_error"),
        ({"kind": PHOTO, "size_bytes": 1000, "sha256": "a" * 64, "content_type": "video/mp4"}, "validation_error"),
        ({"kind": PHOTO, "size_bytes": 1000, "content_type": "image/jpeg"}, "validation_error"),
    ],
)
def test_only_a_declared_enrolment_file_can_be_added(
    caller: Caller, declaration: dict[str, Any], expected: str
) -> None:
    sid = registered(caller)
    assert problem(caller.http.post(f"/v1/sessions/{sid}/media", json=declaration)) == (422, expected)
    assert [m["kind"] for m in caller.http.get(f"/v1/sessions/{sid}").json()["media"]] == ["webcam"]


def test_a_photo_over_the_enrolment_limit_is_refused(caller: Caller, camera_photo: Path) -> None:
    sid = registered(caller)
    refused = caller.http.post(f"/v1/sessions/{sid}/media", json=photo(camera_photo, size_bytes=10 * MIB + 1))
    assert problem(refused) == (413, "media_too_large")
    assert refused.json()["details"] == {"kind": PHOTO, "limit_bytes": 10 * MIB}


def test_a_refused_photo_is_rejected_alone_and_the_session_goes_on(
    api: Api, caller: Caller, tenant: tuple[str, str], tmp_path: Path, small_video: Path
) -> None:
    sid = registered(caller, declare("webcam", small_video))
    nobody = faces.write_photo(tmp_path / "wall.jpg", faces.wall())
    assert caller.http.post(f"/v1/sessions/{sid}/media", json=photo(nobody)).status_code == 201
    assert problem(upload_photo(caller.http, sid, nobody)) == (422, "enrolment_no_face")
    session = caller.http.get(f"/v1/sessions/{sid}").json()
    assert session["state"] == "uploading" and media_of(session, PHOTO)["reason"]["code"] == "enrolment_no_face"
    assert caller.http.get("/v1/candidates/cand-7/enrolment").json()["enrolled"] is False
    assert caller.put_part(sid, "webcam", 1, small_video.read_bytes()).status_code == 200
    assert caller.complete(sid, "webcam").json()["state"] == "queued"


def test_the_sessions_upload_token_adds_its_photo_and_another_sessions_is_refused(
    api: Api, caller: Caller, camera_photo: Path
) -> None:
    sid, other = registered(caller), registered(caller)
    with as_browser(api, new_token(caller, sid)) as browser:
        refused = browser.post(f"/v1/sessions/{other}/media", json=photo(camera_photo))
        assert problem(refused) == (403, "upload_token_wrong_session")
        added = browser.post(f"/v1/sessions/{sid}/media", json=photo(camera_photo))
        assert added.status_code == 201, added.text
        done = upload_photo(browser, sid, camera_photo)
    assert done.status_code == 200, done.text
    assert media_of(done.json(), PHOTO)["state"] == "complete"
    assert caller.http.get("/v1/candidates/cand-7/enrolment").json()["session_id"] == sid
    assert [m["kind"] for m in caller.http.get(f"/v1/sessions/{other}").json()["media"]] == ["webcam"]


def test_a_server_without_enrolment_refuses_it(api: Api, tenant: tuple[str, str], camera_photo: Path) -> None:
    context = api.context
    without = Uploads(context.db, context.store, upload_limits(context.settings), enrolments=None)
    sid = api.uploads.register(tenant[0], SessionCreate.model_validate(session_body(streaming_webcam())), None)[0].id
    declared = MediaDeclaration.model_validate(photo(camera_photo))
    with pytest.raises(IngestError) as refused:
        without.add_media(tenant[0], sid, declared)
    assert (refused.value.status, refused.value.code) == (422, "enrolment_unavailable")


def test_the_openapi_document_describes_the_route(caller: Caller) -> None:
    spec = caller.http.get("/openapi.json").json()
    route = spec["paths"]["/v1/sessions/{session_id}/media"]["post"]
    assert {"200", "201", "409", "410", "413", "422"} <= set(route["responses"])
    assert "MediaDeclaration" in str(route["requestBody"])
    for code in ("media_already_declared", "session_not_uploading"):
        assert code in route["responses"]["409"]["description"]
    assert "upload_token_wrong_session" in route["responses"]["403"]["description"]
    issue = spec["paths"]["/v1/sessions/{session_id}/upload-tokens"]["post"]
    assert "POST .../media" in issue["description"]
