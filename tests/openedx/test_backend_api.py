"""The Open edX backend over HTTP: tokens, config, exams, attempts, retirement and the recorder's routes,
against a migrated database and the real embedded S3 server."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select

from core.db import utcnow
from core.lms_tables import EdxAttempt, EdxClient, EdxExam, SessionCallback
from core.policy_changes import current_version, policy_history
from core.states import SessionState
from core.tables import AuditEvent, Exam, ExamSession, Media, WebhookDelivery
from openedx.clients import IssuedClient, revoke_client
from openedx.texts import negotiate
from openedx.tokens import AUDIENCE, ISSUER, access_token
from pipelines.segments import ExamPolicy
from tests.openedx.conftest import LMS_URL, EdxServer


def exam_body(lms_id: int, **over: object) -> dict[str, object]:
    """An exam as edX's `ProctoredExamJSONSafeSerializer` sends it, with rules."""
    body: dict[str, object] = {
        "id": lms_id,
        "course_id": "course-v1:Org+C101+2026",
        "content_id": "block-v1:Org+C101+2026+type@sequential+block@final",
        "external_id": None,
        "exam_name": "Final exam",
        "time_limit_mins": 60,
        "is_proctored": True,
        "is_practice_exam": False,
        "is_active": True,
        "due_date": None,
        "hide_after_due": False,
        "backend": "proctor_pipeline",
        "rules": {"allow_notes": True, "record_screen": True},
    }
    return body | over


def attempt_body(user_id: str) -> dict[str, object]:
    return {
        "lms_host": "https://lms.example.org",
        "time_limit_mins": 60,
        "is_sample_attempt": False,
        "user_id": user_id,
        "full_name": "Ada Lovelace",
        "email": "ada@example.org",
        "status": "created",
    }


def problem_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    code: str = response.json()["code"]
    return code


@pytest.fixture
def pair(edx: EdxServer) -> tuple[IssuedClient, httpx.Client]:
    issued = edx.client(edx.tenant())
    return issued, edx.http(issued)


def new_exam(http: httpx.Client, **over: object) -> str:
    response = http.post("/api/v1/exam/", json=exam_body(int(uuid.uuid4().int % 100_000), **over))
    assert response.status_code == 200, response.text
    exam_id: str = response.json()["id"]
    return exam_id


def new_attempt(http: httpx.Client, exam_id: str, user_id: str | None = None) -> str:
    response = http.post(f"/api/v1/exam/{exam_id}/attempt/", json=attempt_body(user_id or uuid.uuid4().hex))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "created"
    attempt_id: str = response.json()["id"]
    return attempt_id


# -- the token endpoint and the token check ---------------------------------------------------------------
def test_client_credentials_give_a_jwt_signed_with_the_clients_secret(edx: EdxServer) -> None:
    issued = edx.client(edx.tenant())
    form = {"grant_type": "client_credentials", "client_id": issued.client_id, "client_secret": issued.client_secret}
    response = httpx.post(f"{edx.url}/openedx/oauth2/access_token", data=form | {"token_type": "jwt"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "JWT" and body["expires_in"] == 3600 and body["scope"] == ""
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], issued.client_secret, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["sub"] == issued.client_id and claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 3600 and claims["jti"]

    def refused(data: dict[str, str], status: int) -> str:
        answer = httpx.post(f"{edx.url}/openedx/oauth2/access_token", data=data)
        assert answer.status_code == status, answer.text
        assert answer.json()["error_description"]
        error: str = answer.json()["error"]
        return error

    assert refused(form | {"client_secret": "wrong"}, 401) == "invalid_client"
    assert refused(form | {"client_id": "edx_nobody"}, 401) == "invalid_client"
    assert refused(form | {"grant_type": "password"}, 400) == "unsupported_grant_type"
    assert refused({"grant_type": "client_credentials", "client_id": issued.client_id}, 400) == "invalid_request"
    # HTTP Basic client authentication works too
    basic = httpx.post(
        f"{edx.url}/openedx/oauth2/access_token",
        data={"grant_type": "client_credentials"},
        auth=(issued.client_id, issued.client_secret),
    )
    assert basic.status_code == 200
    with edx.context.db() as db:
        revoke_client(db, issued.client_id, utcnow())
        db.commit()
    assert refused(form, 401) == "invalid_client"


def test_calls_without_a_good_token_are_refused(edx: EdxServer) -> None:
    tenant = edx.tenant()
    issued, other = edx.client(tenant), edx.client(tenant)
    config = f"{edx.url}/openedx/api/v1/config/"
    assert problem_code(httpx.get(config), 401) == "edx_token_missing"
    assert problem_code(httpx.get(config, headers={"Authorization": "JWT not-a-jwt"}), 401) == "edx_token_invalid"
    expired = access_token(issued.client_id, issued.client_secret, utcnow() - timedelta(hours=2))["access_token"]
    assert problem_code(httpx.get(config, headers={"Authorization": f"JWT {expired}"}), 401) == "edx_token_expired"
    forged = access_token(issued.client_id, other.client_secret, utcnow())["access_token"]
    assert problem_code(httpx.get(config, headers={"Authorization": f"JWT {forged}"}), 401) == "edx_token_invalid"
    token = edx.token(issued)
    assert httpx.get(config, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with edx.context.db() as db:
        revoke_client(db, issued.client_id, utcnow())
        db.commit()
    assert problem_code(httpx.get(config, headers={"Authorization": f"JWT {token}"}), 401) == "edx_token_invalid"


# -- config ---------------------------------------------------------------------------------------------
def test_config_names_the_rules_and_the_recorder_in_the_learners_language(
    edx: EdxServer, pair: tuple[IssuedClient, httpx.Client]
) -> None:
    _, http = pair
    english = http.get("/api/v1/config/").json()
    assert english["name"] == "Proctor Pipeline"
    assert set(english["rules"]) == {"allow_notes", "allow_multiple_monitors", "allow_other_people", "record_screen"}
    assert english["rules"]["allow_notes"] == "Paper notes are allowed"
    assert english["download_url"] == f"{edx.url}/recorder/"
    assert len(english["instructions"]) == 4
    french = http.get("/api/v1/config/", headers={"Accept-Language": "fr;en"}).json()  # edX's own form
    assert french["rules"]["allow_notes"] == "Les notes sur papier sont autorisées"
    spanish = http.get("/api/v1/config/", headers={"Accept-Language": "de-DE, es-MX;q=0.8, fr;q=0.5"}).json()
    assert spanish["rules"]["record_screen"].startswith("Se graba")
    assert http.get("/api/v1/config/", headers={"Accept-Language": "de"}).json() == english


def test_language_negotiation_weighs_q_values_and_falls_back_to_english() -> None:
    assert negotiate("fr;q=0.2, es;q=0.9") == "es"
    assert negotiate("pt-BR, fr-CA;q=0.5") == "fr"
    assert negotiate("es;q=0, en;q=0.1") == "en"
    assert negotiate("ja") == negotiate(None) == negotiate("") == "en"


# -- exams ----------------------------------------------------------------------------------------------
def test_exams_are_created_once_per_lms_id_and_their_rules_drive_the_policy(
    edx: EdxServer, pair: tuple[IssuedClient, httpx.Client]
) -> None:
    issued, http = pair
    created = http.post("/api/v1/exam/", json=exam_body(41))
    assert created.status_code == 200
    exam = created.json()
    assert exam["rules"] == {
        "allow_notes": True,
        "allow_multiple_monitors": False,
        "allow_other_people": False,
        "record_screen": True,
    }
    again = http.post("/api/v1/exam/", json=exam_body(41, exam_name="Final exam (resit)"))
    assert again.json()["id"] == exam["id"] and again.json()["name"] == "Final exam (resit)"
    with edx.context.db() as db:
        row = db.get(EdxExam, exam["id"])
        assert row is not None and row.lms_exam_id == 41
        tenant_exam = db.get(Exam, row.exam_id)
        assert tenant_exam is not None and tenant_exam.external_id == f"edx-{exam['id']}"
        assert tenant_exam.title == "Final exam (resit)"
        policy = ExamPolicy.from_json(tenant_exam.policy)
        assert policy.looking_away.pitch_deg == 35 and policy.looking_away.yaw_deg is None

    rules = {"allow_multiple_monitors": True, "allow_other_people": True, "edx_own_rule": "ignored"}
    updated = http.post(f"/api/v1/exam/{exam['id']}/", json=exam_body(41, external_id=exam["id"], rules=rules))
    assert updated.status_code == 200
    assert updated.json()["rules"]["allow_notes"] is False and updated.json()["rules"]["allow_other_people"] is True
    # edX's own saves carry no rules: the exam keeps its rules
    kept = http.post(f"/api/v1/exam/{exam['id']}/", json={k: v for k, v in exam_body(41).items() if k != "rules"})
    assert kept.json()["rules"] == updated.json()["rules"]
    assert http.get(f"/api/v1/exam/{exam['id']}/").json() == kept.json()
    with edx.context.db() as db:
        tenant_exam = db.get(Exam, db.get(EdxExam, exam["id"]).exam_id)  # type: ignore[union-attr]
        policy = ExamPolicy.from_json(tenant_exam.policy)  # type: ignore[union-attr]
        assert policy.looking_away.yaw_deg == 45 and policy.looking_away.pitch_deg is None
        assert policy.kinds["multiple_faces"].weight == 0.0  # type: ignore[index]
        # each change of rules is a policy version, audited under the edX client, as an officer's edit would be
        versions = policy_history(db, tenant_exam.id)  # type: ignore[union-attr]
        assert [(v.version, v.changed_by) for v in versions] == [
            (2, f"openedx:{issued.client_id}"),
            (1, f"openedx:{issued.client_id}"),
        ]
        applied = db.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "exam_policy_applied", AuditEvent.tenant_id == tenant_exam.tenant_id
            )  # type: ignore[union-attr]
        ).all()
        assert [(e.actor, e.detail["version"], e.detail["changed"]) for e in applied] == [
            (f"openedx:{issued.client_id}", 1, True),
            (f"openedx:{issued.client_id}", 2, True),
        ]
    # the same rules sent again leave the policy alone (and any officer's change made since)
    http.post(f"/api/v1/exam/{exam['id']}/", json=exam_body(41, external_id=exam["id"], rules=rules))
    with edx.context.db() as db:
        assert current_version(db, db.get(EdxExam, exam["id"]).exam_id) == 2  # type: ignore[union-attr]

    bad = http.post("/api/v1/exam/", json=exam_body(42, rules={"allow_notes": "yes"}))
    assert problem_code(bad, 422) == "edx_rule_invalid"
    assert problem_code(http.get("/api/v1/exam/nosuchexam/"), 404) == "edx_exam_not_found"
    stranger = edx.http(edx.client(edx.tenant()))
    assert problem_code(stranger.get(f"/api/v1/exam/{exam['id']}/"), 404) == "edx_exam_not_found"
    assert problem_code(stranger.post(f"/api/v1/exam/{exam['id']}/", json=exam_body(41)), 404) == "edx_exam_not_found"
    # the same LMS id from another client is another exam
    assert new_exam(stranger) != exam["id"]
    assert issued.client_id


# -- attempts -------------------------------------------------------------------------------------------
def test_an_attempt_moves_through_its_lifecycle_and_refuses_impossible_moves(
    edx: EdxServer, pair: tuple[IssuedClient, httpx.Client]
) -> None:
    _, http = pair
    exam_id = new_exam(http)
    attempt_id = new_attempt(http, exam_id, "a1b2c3")
    with edx.context.db() as db:
        row = db.get(EdxAttempt, attempt_id)
        assert row is not None and row.user_id == "a1b2c3" and row.status == "created"
    url = f"/api/v1/exam/{exam_id}/attempt/{attempt_id}/"
    got = http.get(url, headers={"Accept-Language": "es"}).json()
    assert got["id"] == attempt_id and got["status"] == "created"
    assert got["download_url"] == f"{edx.url}/recorder/?attempt={attempt_id}"
    assert got["instructions"][0].startswith("Abra")
    assert problem_code(http.patch(url, json={"status": "submitted"}), 409) == "edx_attempt_state"
    assert http.patch(url, json={"status": "started"}).json() == {"status": "started"}
    assert http.patch(url, json={"status": "started"}).json() == {"status": "started"}  # edX retries
    assert http.patch(url, json={"status": "submitted"}).json() == {"status": "submitted"}
    refused = http.patch(url, json={"status": "started"})
    assert problem_code(refused, 409) == "edx_attempt_state" and refused.json()["details"]["status"] == "submitted"
    assert problem_code(http.patch(url, json={"status": "error"}), 409) == "edx_attempt_state"
    assert problem_code(http.patch(url, json={"status": "verified"}), 422) == "validation_error"

    assert problem_code(http.get(f"/api/v1/exam/{exam_id}/attempt/nosuch/"), 404) == "edx_attempt_not_found"
    other_exam = new_exam(http)
    assert problem_code(http.get(f"/api/v1/exam/{other_exam}/attempt/{attempt_id}/"), 404) == "edx_attempt_not_found"
    stranger = edx.http(edx.client(edx.tenant()))
    assert problem_code(stranger.get(url), 404) == "edx_exam_not_found"
    assert problem_code(stranger.delete(url), 404) == "edx_exam_not_found"
    assert problem_code(stranger.post(f"/api/v1/exam/{exam_id}/attempt/", json=attempt_body("x")), 404) == (
        "edx_exam_not_found"
    )
    bad_user = http.post(f"/api/v1/exam/{exam_id}/attempt/", json=attempt_body("no spaces/here"))
    assert problem_code(bad_user, 422) == "edx_user_id_invalid"


def test_the_recorder_starts_one_session_gets_ready_once_and_hears_the_status(
    edx: EdxServer, pair: tuple[IssuedClient, httpx.Client]
) -> None:
    issued, http = pair
    exam_id = new_exam(http)  # record_screen is on
    attempt_id = new_attempt(http, exam_id, "learner-9")
    recorder = httpx.Client(base_url=f"{edx.url}/openedx/recorder/{attempt_id}", timeout=60)
    assert problem_code(recorder.post("/ready"), 409) == "edx_recorder_not_started"
    first = recorder.post("/start")
    assert first.status_code == 200, first.text
    started = first.json()
    assert started["record_screen"] is True
    media = {m["kind"]: m for m in started["media"]}
    assert set(media) == {"webcam", "events", "screen"}
    assert media["webcam"]["streaming"] and media["webcam"]["content_type"] == "video/webm"
    assert media["events"]["content_type"] == "application/x-ndjson" and media["events"]["streaming"]
    again = recorder.post("/start")  # a reload: the same session, a fresh token
    assert again.json()["session_id"] == started["session_id"]
    assert again.json()["upload_token"] != started["upload_token"]
    session_id = started["session_id"]

    with edx.context.db() as db:
        session = db.get(ExamSession, session_id)
        assert session is not None and session.candidate_id == "learner-9" and session.attempt_id == attempt_id
        assert session.exam.external_id == f"edx-{exam_id}"
        assert db.get(EdxAttempt, attempt_id).session_id == session_id  # type: ignore[union-attr]
        client = db.scalar(select(EdxClient).where(EdxClient.client_id == issued.client_id))
        callbacks = db.scalars(select(SessionCallback).where(SessionCallback.session_id == session_id)).all()
        assert [(c.event, c.channel, c.url, c.ref) for c in callbacks] == [
            (
                "review.final",
                "openedx",
                f"{LMS_URL}/api/edx_proctoring/v1/proctored_exam/attempt/{attempt_id}/reviewed",
                client.id,  # type: ignore[union-attr]
            )
        ]

    # the upload token opens the session
    token = {"Authorization": f"Bearer {again.json()['upload_token']}"}
    assert httpx.get(f"{edx.url}/v1/sessions/{session_id}", headers=token).json()["id"] == session_id

    assert recorder.post("/ready").json() == {"status": "ready"}
    assert recorder.post("/ready").json() == {"status": "ready"}
    with edx.context.db() as db:
        deliveries = db.scalars(select(WebhookDelivery).where(WebhookDelivery.session_id == session_id)).all()
        assert [(d.event, d.channel, d.url, d.body, d.ref) for d in deliveries] == [
            (
                "openedx.ready",
                "openedx",
                f"{LMS_URL}/api/edx_proctoring/v1/proctored_exam/attempt/{attempt_id}/ready",
                '{"status": "ready"}',
                client.id,  # type: ignore[union-attr]
            )
        ]
    assert recorder.post("/heartbeat").json() == {"status": "ready"}
    with edx.context.db() as db:
        assert db.get(EdxAttempt, attempt_id).recorder_seen_at is not None  # type: ignore[union-attr]
    url = f"/api/v1/exam/{exam_id}/attempt/{attempt_id}/"
    http.patch(url, json={"status": "started"})
    http.patch(url, json={"status": "submitted"})
    assert recorder.post("/heartbeat").json() == {"status": "submitted"}
    assert problem_code(recorder.post("/start"), 409) == "edx_attempt_state"
    assert problem_code(recorder.post("/ready"), 409) == "edx_attempt_state"
    nobody = f"{edx.url}/openedx/recorder/{uuid.uuid4().hex}/heartbeat"
    assert problem_code(httpx.post(nobody), 404) == "edx_attempt_not_found"


def test_a_recording_without_screen_or_photo_declares_webcam_and_events(
    pair: tuple[IssuedClient, httpx.Client], edx: EdxServer
) -> None:
    _, http = pair
    exam_id = new_exam(http, rules={})
    attempt_id = new_attempt(http, exam_id)
    started = httpx.post(f"{edx.url}/openedx/recorder/{attempt_id}/start").json()
    assert started["record_screen"] is False
    assert sorted(m["kind"] for m in started["media"]) == ["events", "webcam"]


def recorded_attempt(edx: EdxServer, http: httpx.Client, exam_id: str, user_id: str) -> tuple[str, str, str]:
    """An attempt whose recorder started and uploaded a webcam part, with a result object stored beside it:
    (attempt id, session id, the session's object prefix)."""
    attempt_id = new_attempt(http, exam_id, user_id)
    started = httpx.post(f"{edx.url}/openedx/recorder/{attempt_id}/start").json()
    part = b"\x1a\x45\xdf\xa3" + bytes(1000)
    put = httpx.put(
        f"{edx.url}/v1/sessions/{started['session_id']}/media/webcam/parts/1",
        content=part,
        headers={
            "Authorization": f"Bearer {started['upload_token']}",
            "X-Part-SHA256": hashlib.sha256(part).hexdigest(),
        },
    )
    assert put.status_code == 200, put.text
    with edx.context.db() as db:
        webcam = db.scalar(select(Media).where(Media.session_id == started["session_id"], Media.kind == "webcam"))
        assert webcam is not None
        prefix = webcam.object_key.rsplit("media/", 1)[0]
    edx.context.store.put_bytes(prefix + "results/signals.json", b"{}")
    assert edx.context.store.list_multipart_uploads(prefix) and list(edx.context.store.list_objects(prefix))
    return attempt_id, started["session_id"], prefix


def assert_erased(edx: EdxServer, session_id: str, prefix: str) -> None:
    with edx.context.db() as db:
        session = db.get(ExamSession, session_id)
        assert session is not None and session.state == SessionState.DELETED
    assert list(edx.context.store.list_objects(prefix)) == []
    assert edx.context.store.list_multipart_uploads(prefix) == []


def test_removing_an_attempt_erases_its_session(edx: EdxServer, pair: tuple[IssuedClient, httpx.Client]) -> None:
    _, http = pair
    exam_id = new_exam(http)
    attempt_id, session_id, prefix = recorded_attempt(edx, http, exam_id, "learner-1")
    url = f"/api/v1/exam/{exam_id}/attempt/{attempt_id}/"
    assert http.delete(url).json() == {"status": "deleted"}
    assert_erased(edx, session_id, prefix)
    with edx.context.db() as db:
        assert db.get(EdxAttempt, attempt_id) is None
    assert problem_code(http.delete(url), 404) == "edx_attempt_not_found"  # edX reads a 404 as removed
    never_started = new_attempt(http, exam_id)
    assert http.delete(f"/api/v1/exam/{exam_id}/attempt/{never_started}/").json() == {"status": "deleted"}


def test_retiring_a_learner_erases_their_sessions_and_attempts(
    edx: EdxServer, pair: tuple[IssuedClient, httpx.Client]
) -> None:
    _, http = pair
    exam_a, exam_b = new_exam(http), new_exam(http)
    first, session_a, prefix_a = recorded_attempt(edx, http, exam_a, "leaving")
    second, session_b, prefix_b = recorded_attempt(edx, http, exam_b, "leaving")
    kept, session_kept, prefix_kept = recorded_attempt(edx, http, exam_a, "staying")
    response = http.delete("/api/v1/user/leaving/")
    assert response.status_code == 200 and response.json() is True
    assert_erased(edx, session_a, prefix_a)
    assert_erased(edx, session_b, prefix_b)
    with edx.context.db() as db:
        assert db.get(EdxAttempt, first) is None and db.get(EdxAttempt, second) is None
        assert db.get(EdxAttempt, kept) is not None
        assert db.get(ExamSession, session_kept).state != SessionState.DELETED  # type: ignore[union-attr]
    assert list(edx.context.store.list_objects(prefix_kept))
    assert http.delete("/api/v1/user/leaving/").json() is True  # again, and for a learner we never saw
    assert http.delete("/api/v1/user/never-seen/").json() is True


def test_the_routes_are_in_the_openapi_document(edx: EdxServer) -> None:
    paths = httpx.get(f"{edx.url}/openapi.json").json()["paths"]
    for path in (
        "/openedx/oauth2/access_token",
        "/openedx/api/v1/config/",
        "/openedx/api/v1/exam/",
        "/openedx/api/v1/exam/{exam_id}/",
        "/openedx/api/v1/exam/{exam_id}/attempt/",
        "/openedx/api/v1/exam/{exam_id}/attempt/{attempt_id}/",
        "/openedx/api/v1/user/{user_id}/",
        "/openedx/recorder/{attempt_id}/start",
        "/openedx/recorder/{attempt_id}/ready",
        "/openedx/recorder/{attempt_id}/heartbeat",
    ):
        assert path in paths, path
        assert all("openedx" in operation["tags"] for operation in paths[path].values())
