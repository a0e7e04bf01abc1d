"""Enrolment over the /v1 API: a reference photo or clip uploaded with a session, checked on `complete`,
kept under the candidate and reused by their later sessions; a refused one rejects itself, not the exam."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.enrolments import CandidatePrefix, latest_enrolment
from core.tables import CandidateEnrolment, Tenant
from tests.api import faces
from tests.support import media as mf
from tests.support.platform import MIB, Api, Caller, declare, problem, session_body

PHOTO = "enrolment_photo"
CLIP = "enrolment_clip"


def photo(path: Path) -> dict[str, Any]:
    return declare(PHOTO, path, "image/png" if path.suffix == ".png" else "image/jpeg")


def media_of(session: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(m for m in session["media"] if m["kind"] == kind)


def enrolments(api: Api, tenant_id: str, candidate: str = "cand-7") -> list[CandidateEnrolment]:
    with api.context.db() as db:
        return list(
            db.scalars(
                select(CandidateEnrolment)
                .where(CandidateEnrolment.tenant_id == tenant_id, CandidateEnrolment.candidate_id == candidate)
                .order_by(CandidateEnrolment.created_at)
            )
        )


def stored_keys(api: Api, tenant_id: str, candidate: str = "cand-7") -> list[str]:
    with api.context.db() as db:
        tenant = db.get(Tenant, tenant_id)
        assert tenant is not None
        prefix = CandidatePrefix(tenant.slug, candidate).prefix
    return sorted(o.key for o in api.context.store.list_objects(prefix))


@pytest.mark.parametrize("code", sorted(faces.REFUSED_PHOTOS))
def test_a_refused_photo_rejects_itself_with_its_code_and_the_exam_goes_on(
    api: Api, caller: Caller, tenant: tuple[str, str], tmp_path: Path, small_video: Path, code: str
) -> None:
    path = faces.REFUSED_PHOTOS[code](tmp_path)
    sid = caller.register(session_body(declare("webcam", small_video), photo(path))).json()["id"]

    refused = caller.upload_whole(sid, PHOTO, path)
    assert problem(refused) == (422, code)
    assert refused.json()["details"] == {"kind": PHOTO}
    assert problem(caller.complete(sid, PHOTO)) == (422, code)  # a replay answers the same
    session = caller.http.get(f"/v1/sessions/{sid}").json()
    assert session["state"] == "uploading" and session["reason"] is None  # the session is not rejected
    rejected = media_of(session, PHOTO)
    assert rejected["state"] == "rejected" and rejected["reason"]["code"] == code and rejected["enrolment"] is None
    assert enrolments(api, tenant[0]) == []

    # The recording is as valid as before: it is queued and will be reviewed without identity.
    queued = caller.upload_whole(sid, "webcam", small_video)
    assert queued.status_code == 200 and queued.json()["state"] == "queued"


def test_a_good_photo_becomes_the_candidates_enrolment(
    api: Api, caller: Caller, tenant: tuple[str, str], tmp_path: Path, small_video: Path
) -> None:
    path = faces.write_photo(tmp_path / "me.jpg", faces.astronaut())
    sid = caller.register(session_body(declare("webcam", small_video), photo(path))).json()["id"]
    done = caller.upload_whole(sid, PHOTO, path)
    assert done.status_code == 200, done.text
    accepted = media_of(done.json(), PHOTO)
    assert accepted["state"] == "complete" and accepted["probe"] is None
    assert accepted["enrolment"]["frames"] == 1 and accepted["enrolment"]["face_size_px"] > 80
    assert done.json()["state"] == "uploading"  # an enrolment alone does not queue the exam

    (row,) = enrolments(api, tenant[0])
    assert row.session_id == sid and row.kind == PHOTO and row.frames == 1
    assert len(row.descriptor) == 128 and all(isinstance(v, float) for v in row.descriptor)
    # Stored under the candidate, not the session: `<tenant>/_candidates/<candidate>/enrolment/<session>-<kind>`.
    assert stored_keys(api, tenant[0]) == [row.object_key]
    assert row.object_key.endswith(f"/_candidates/cand-7/enrolment/{sid}-{PHOTO}")

    shown = caller.http.get("/v1/candidates/cand-7/enrolment").json()
    assert shown["enrolled"] and shown["session_id"] == sid and shown["kind"] == PHOTO
    assert shown["quality"] == accepted["enrolment"] and shown["enrolments_kept"] == 1
    assert "descriptor" not in str(shown)
    assert caller.upload_whole(sid, "webcam", small_video).json()["state"] == "queued"


def test_a_clip_is_sampled_and_averaged(
    api: Api, caller: Caller, tenant: tuple[str, str], tmp_path: Path, small_video: Path
) -> None:
    clip = faces.write_clip(tmp_path / "me.mp4", faces.grace())
    sid = caller.register(session_body(declare("webcam", small_video), declare(CLIP, clip))).json()["id"]
    done = caller.upload_whole(sid, CLIP, clip)
    assert done.status_code == 200, done.text
    accepted = media_of(done.json(), CLIP)
    assert accepted["probe"]["codec"] == "h264" and accepted["probe"]["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert accepted["enrolment"]["frames"] == 8
    (row,) = enrolments(api, tenant[0])
    assert row.kind == CLIP and row.frames == 8


def test_photo_and_clip_together_and_the_session_is_queued_without_waiting_for_them(
    api: Api, caller: Caller, tenant: tuple[str, str], tmp_path: Path, small_video: Path
) -> None:
    path = faces.write_photo(tmp_path / "me.png", faces.astronaut())
    clip = faces.write_clip(tmp_path / "me.mp4", faces.astronaut())
    body = session_body(declare("webcam", small_video), photo(path), declare(CLIP, clip))
    sid = caller.register(body).json()["id"]
    # The exam is not held up by enrolment files still uploading.
    assert caller.upload_whole(sid, "webcam", small_video).json()["state"] == "queued"
    assert caller.upload_whole(sid, PHOTO, path).json()["state"] == "queued"
    assert caller.upload_whole(sid, CLIP, clip).json()["state"] == "queued"
    kinds = [row.kind for row in enrolments(api, tenant[0])]
    assert sorted(kinds) == [CLIP, PHOTO] and len(stored_keys(api, tenant[0])) == 2
    with api.context.db() as db:
        latest = latest_enrolment(db, tenant[0], "cand-7")
        assert latest is not None and latest.kind == CLIP  # the one accepted last


def test_a_later_session_without_enrolment_reuses_the_candidates_last_one(
    api: Api, caller: Caller, tenant: tuple[str, str], tmp_path: Path, small_video: Path
) -> None:
    first_photo = faces.write_photo(tmp_path / "first.jpg", faces.astronaut())
    first = caller.register(session_body(declare("webcam", small_video), photo(first_photo))).json()["id"]
    assert caller.upload_whole(first, PHOTO, first_photo).status_code == 200
    second = caller.register(session_body(declare("webcam", small_video))).json()["id"]
    other = caller.register(session_body(declare("webcam", small_video), candidate_id="cand-8")).json()["id"]
    with api.context.db() as db:
        reused = latest_enrolment(db, tenant[0], "cand-7", session_id=second)
        assert reused is not None and reused.session_id == first
        assert latest_enrolment(db, tenant[0], "cand-8", session_id=other) is None

    # A newer enrolment replaces it for later sessions; a session keeps its own.
    new_photo = faces.write_photo(tmp_path / "new.jpg", faces.astronaut()[::2, ::2].repeat(2, 0).repeat(2, 1))
    third = caller.register(session_body(declare("webcam", small_video), photo(new_photo))).json()["id"]
    assert caller.upload_whole(third, PHOTO, new_photo).status_code == 200
    with api.context.db() as db:
        newest = latest_enrolment(db, tenant[0], "cand-7", session_id=second)
        assert newest is not None and newest.session_id == third
        own = latest_enrolment(db, tenant[0], "cand-7", session_id=first)
        assert own is not None and own.session_id == first


def test_enrolments_are_per_tenant(api: Api, caller: Caller, tmp_path: Path, small_video: Path) -> None:
    path = faces.write_photo(tmp_path / "me.jpg", faces.astronaut())
    sid = caller.register(session_body(declare("webcam", small_video), photo(path))).json()["id"]
    assert caller.upload_whole(sid, PHOTO, path).status_code == 200

    other_id, other_key = api.tenant()
    other = Caller(httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=60))
    # Never seen by the other tenant: 404, as for a candidate that does not exist.
    assert problem(other.http.get("/v1/candidates/cand-7/enrolment")) == (404, "candidate_not_found")
    assert problem(other.http.delete("/v1/candidates/cand-7")) == (404, "candidate_not_found")
    # The same pseudonymous id under the other tenant is another person, with no enrolment.
    other.register(session_body(declare("webcam", small_video)))
    shown = other.http.get("/v1/candidates/cand-7/enrolment").json()
    assert shown["enrolled"] is False and shown["enrolments_kept"] == 0
    with api.context.db() as db:
        assert latest_enrolment(db, other_id, "cand-7") is None
    assert caller.http.get("/v1/candidates/cand-7/enrolment").json()["enrolled"] is True


def test_enrolment_files_have_their_own_limits(caller: Caller, tmp_path: Path, small_video: Path) -> None:
    path = faces.write_photo(tmp_path / "me.jpg", faces.astronaut())
    webcam = declare("webcam", small_video)
    too_big = photo(path) | {"size_bytes": 10 * MIB + 1}
    assert problem(caller.register(session_body(webcam, too_big))) == (413, "media_too_large")
    as_video = declare(PHOTO, path, "video/mp4")
    assert problem(caller.register(session_body(webcam, as_video))) == (422, "validation_error")
    long_clip = mf.write_video(tmp_path / "long.mp4", frames=31 * 15)
    sid = caller.register(session_body(webcam, declare(CLIP, long_clip))).json()["id"]
    assert problem(caller.upload_whole(sid, CLIP, long_clip)) == (422, "duration_too_long")
    assert caller.http.get(f"/v1/sessions/{sid}").json()["state"] == "uploading"


def test_a_photo_that_does_not_match_its_checksum_is_rejected_alone(
    caller: Caller, tmp_path: Path, small_video: Path
) -> None:
    path = faces.write_photo(tmp_path / "me.jpg", faces.astronaut())
    declared = photo(path) | {"sha256": "0" * 64}
    sid = caller.register(session_body(declare("webcam", small_video), declared)).json()["id"]
    assert problem(caller.upload_whole(sid, PHOTO, path)) == (422, "checksum_mismatch")
    assert caller.http.get(f"/v1/sessions/{sid}").json()["state"] == "uploading"
