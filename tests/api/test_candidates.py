"""`DELETE /v1/candidates/{id}` (user retirement) and what erasing a session does to enrolments: biometric data
leaves S3 and the database, and the audit trail says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from core.enrolments import CandidatePrefix
from core.tables import AuditEvent, CandidateEnrolment, ExamSession, Tenant
from storage.keys import SessionPrefix
from tests.api import faces
from tests.support.platform import Api, Caller, declare, problem, session_body

PHOTO = "enrolment_photo"


def prefixes(api: Api, session_ids: list[str], candidate: str = "cand-7") -> list[str]:
    """The candidate's prefix and each session's."""
    with api.context.db() as db:
        sessions = [db.get(ExamSession, sid) for sid in session_ids]
        assert all(sessions)
        slug = sessions[0].tenant.slug  # type: ignore[union-attr]
        found = [CandidatePrefix(slug, candidate).prefix]
        found += [SessionPrefix(slug, s.exam.external_id, s.id).prefix for s in sessions if s is not None]
    return found


def listed(api: Api, prefix: str) -> list[str]:
    return [o.key for o in api.context.store.list_objects(prefix)]


def test_delete_candidate_erases_enrolments_sessions_and_embeddings(
    api: Api, caller: Caller, tenant: tuple[str, str], tmp_path: Path, small_video: Path
) -> None:
    good = faces.write_photo(tmp_path / "good.jpg", faces.astronaut())
    bad = faces.REFUSED_PHOTOS["enrolment_blurred"](tmp_path)
    first = caller.register(session_body(declare("webcam", small_video), declare(PHOTO, good, "image/jpeg"))).json()
    assert caller.upload_whole(first["id"], PHOTO, good).status_code == 200
    assert caller.upload_whole(first["id"], "webcam", small_video).json()["state"] == "queued"
    second = caller.register(session_body(declare("webcam", small_video), declare(PHOTO, bad, "image/jpeg"))).json()
    assert problem(caller.upload_whole(second["id"], PHOTO, bad)) == (422, "enrolment_blurred")
    other = caller.register(session_body(declare("webcam", small_video), candidate_id="cand-8")).json()
    session_ids = [first["id"], second["id"]]
    candidate_prefix, first_prefix, _ = prefixes(api, session_ids)
    # What the pipeline writes per session, face embeddings included, lives under the session's results prefix.
    api.context.store.put_bytes(f"{first_prefix}results/v1/r1/descriptors.npz", b"PK face descriptors")
    assert len(listed(api, candidate_prefix)) == 2  # the accepted photo and the refused one

    erased = caller.http.delete("/v1/candidates/cand-7")
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["candidate_id"] == "cand-7" and sorted(body["sessions_erased"]) == sorted(session_ids)
    assert body["enrolments_erased"] == 1 and body["objects_removed"] == 4  # 2 enrolment files, webcam, embeddings

    for prefix in prefixes(api, session_ids):
        assert listed(api, prefix) == [], prefix
    assert api.context.store.list_multipart_uploads(candidate_prefix) == []
    with api.context.db() as db:
        left = select(func.count()).select_from(CandidateEnrolment).where(CandidateEnrolment.tenant_id == tenant[0])
        assert db.scalar(left) == 0
        for sid in session_ids:
            session = db.get(ExamSession, sid)
            assert session is not None and session.state == "deleted" and session.reason_code == "candidate_erased"
        kept = db.get(ExamSession, other["id"])
        assert kept is not None and kept.state == "uploading"  # another candidate of the tenant is untouched
        slug = db.get(Tenant, tenant[0]).slug  # type: ignore[union-attr]
        mine = AuditEvent.tenant_id == tenant[0]  # the PostgreSQL database is shared by the run's tests
        audit = db.scalars(select(AuditEvent).where(mine, AuditEvent.action == "erase_candidate")).one()
        assert audit.actor == f"api:{slug}" and audit.tenant_id == tenant[0]
        assert audit.detail == {
            "candidate_id": "cand-7",
            "sessions_erased": 2,
            "enrolments_erased": 1,
            "objects_removed": 4,
        }
        per_session = db.scalars(select(AuditEvent.session_id).where(mine, AuditEvent.action == "erase")).all()
        assert sorted(s for s in per_session if s) == sorted(session_ids)

    # Idempotent: again, nothing is left to erase; the candidate is known, so it is not a 404.
    again = caller.http.delete("/v1/candidates/cand-7").json()
    assert again == {"candidate_id": "cand-7", "sessions_erased": [], "enrolments_erased": 0, "objects_removed": 0}
    shown = caller.http.get("/v1/candidates/cand-7/enrolment").json()
    assert shown["enrolled"] is False and shown["quality"] is None
    assert problem(caller.http.get(f"/v1/sessions/{first['id']}/review")) == (404, "session_not_found")


def test_an_unknown_or_unsafe_candidate_is_not_found(caller: Caller) -> None:
    assert problem(caller.http.delete("/v1/candidates/nobody")) == (404, "candidate_not_found")
    assert problem(caller.http.get("/v1/candidates/nobody/enrolment")) == (404, "candidate_not_found")
    assert problem(caller.http.delete("/v1/candidates/a..b")) == (404, "candidate_not_found")


def test_erasing_a_session_keeps_the_candidates_enrolment_but_not_a_refused_file(
    api: Api, caller: Caller, tmp_path: Path, small_video: Path
) -> None:
    good = faces.write_photo(tmp_path / "good.jpg", faces.astronaut())
    first = caller.register(session_body(declare("webcam", small_video), declare(PHOTO, good, "image/jpeg"))).json()
    assert caller.upload_whole(first["id"], PHOTO, good).status_code == 200
    bad = faces.REFUSED_PHOTOS["enrolment_no_face"](tmp_path)
    second = caller.register(session_body(declare("webcam", small_video), declare(PHOTO, bad, "image/png"))).json()
    assert problem(caller.upload_whole(second["id"], PHOTO, bad)) == (422, "enrolment_no_face")
    unfinished = faces.write_photo(tmp_path / "later.jpg", faces.grace())
    third = caller.register(
        session_body(declare("webcam", small_video), declare(PHOTO, unfinished, "image/jpeg"))
    ).json()
    candidate_prefix = prefixes(api, [first["id"]])[0]
    assert len(listed(api, candidate_prefix)) == 2

    for session in (first, second, third):
        assert caller.http.delete(f"/v1/sessions/{session['id']}").json()["state"] == "deleted"
    # The accepted photo is the candidate's (later exams reuse it); the refused one went with its session.
    (kept,) = listed(api, candidate_prefix)
    assert kept.endswith(f"{first['id']}-{PHOTO}")
    assert api.context.store.list_multipart_uploads(candidate_prefix) == []
    assert caller.http.get("/v1/candidates/cand-7/enrolment").json()["session_id"] == first["id"]


def test_the_openapi_document_types_the_candidate_routes(caller: Caller) -> None:
    spec = caller.http.get("/openapi.json").json()
    delete = spec["paths"]["/v1/candidates/{candidate_id}"]["delete"]
    assert delete["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CandidateErasureOut")
    assert "404" in delete["responses"]
    enrolment = spec["paths"]["/v1/candidates/{candidate_id}/enrolment"]["get"]
    assert enrolment["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/EnrolmentOut")
    fields = spec["components"]["schemas"]["EnrolmentOut"]["properties"]
    assert "descriptor" not in fields and {"enrolled", "enrolled_at", "session_id", "quality"} <= set(fields)
    kinds = spec["components"]["schemas"]["MediaKind"]["enum"]
    assert {"enrolment_photo", "enrolment_clip"} <= set(kinds)


def test_the_api_process_loads_the_face_models_only_for_an_enrolment(tmp_path: Path) -> None:
    """`proctor serve` stays small: building the whole app imports no detector, ONNX Runtime or OpenCV."""
    script = (
        "import sys\n"
        "from core.settings import Settings\n"
        "from proctor import wiring\n"
        "import proctor.cli\n"
        "wiring.enrolment_face_check  # referenced, not called\n"
        "loaded = [m for m in ('detectors', 'detectors.enrolment', 'onnxruntime', 'cv2') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
