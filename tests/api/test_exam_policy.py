"""`GET`/`PUT /v1/exams/{exam_id}/policy`: a platform reads and sets its exam's flagging policy with its API key;
setting it is versioned, audited, and re-scores the processed sessions whose review is not final."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.tables import AuditEvent, Exam, ExamSession, FlagSegment, Job, SessionReview, Tenant
from core.vocabulary import JobKind
from tests.support.platform import Api, Caller, problem
from tests.support.stored_signals import episode_signals, run_queued_jobs, store_processed_session


def put(caller: Caller, exam_id: str, body: dict[str, Any]) -> httpx.Response:
    return caller.http.put(f"/v1/exams/{exam_id}/policy", json=body)


def test_a_policy_set_before_the_first_session_is_read_back_whole(caller: Caller) -> None:
    assert problem(caller.http.get("/v1/exams/exam-new/policy")) == (404, "exam_not_found")
    body = {"sensitivity": 1.5, "kinds": {"no_face": {"min_duration_ms": 4000}}, "allowed_aids": "a calculator"}
    first = put(caller, "exam-new", body)
    assert first.status_code == 200, first.text
    out = first.json()
    assert (out["exam_id"], out["version"], out["changed"], out["rescore_queued"]) == ("exam-new", 1, True, 0)
    assert out["policy"]["kinds"]["no_face"] == {
        "enabled": True, "enter": 0.5, "exit": 0.3, "min_duration_ms": 4000, "merge_gap_ms": 1500,
        "max_unknown_ms": 1000, "weight": 0.6,
    }  # fmt: skip
    assert out["policy"]["kinds"]["looking_away"]["min_duration_ms"] == 2000, "a kind left out keeps its defaults"
    assert out["policy"]["looking_away"] == {"yaw_deg": None, "pitch_deg": None, "gaze_h": None}
    read = caller.http.get("/v1/exams/exam-new/policy").json()
    assert read == {k: out[k] for k in ("exam_id", "version", "changed_at", "policy")}
    again = put(caller, "exam-new", body).json()
    assert (again["version"], again["changed"]) == (1, False), "the same policy is not a new version"
    assert put(caller, "exam-new", {}).json()["version"] == 2, "an empty body is the defaults"


def test_setting_a_policy_rescores_what_is_not_final_and_is_audited(
    api: Api, caller: Caller, tenant: tuple[str, str]
) -> None:
    tenant_id, _ = tenant
    signals = episode_signals(30, no_face=[(5.0, 7.4)])
    open_id = store_processed_session(api.context, tenant_id, "exam-live", signals)
    final_id = store_processed_session(api.context, tenant_id, "exam-live", signals)
    with api.context.db() as db:
        final = db.get(ExamSession, final_id)
        assert final is not None
        final.state = "reviewed"
        db.add(SessionReview(session_id=final_id, outcome="Clean", status="final", reviewer_id=None))
        db.commit()
    out = put(caller, "exam-live", {"kinds": {"no_face": {"min_duration_ms": 2000}}}).json()
    assert out["rescore_queued"] == 1
    assert out["not_rescored"] == [{"session_id": final_id, "reason": "final (reopen to re-score)"}]
    with api.context.db() as db:
        queued = db.scalars(select(Job.session_id).where(Job.kind == JobKind.RESCORE.value)).all()
        assert open_id in queued and final_id not in queued
        slug = db.get(Tenant, tenant_id).slug  # type: ignore[union-attr]
        exam_id = db.scalar(select(Exam.id).where(Exam.tenant_id == tenant_id, Exam.external_id == "exam-live"))
        entry = db.scalar(
            select(AuditEvent).where(AuditEvent.action == "exam_policy_applied", AuditEvent.tenant_id == tenant_id)
        )
    assert entry is not None and entry.actor == f"api:{slug}" and entry.detail["exam_id"] == exam_id
    assert entry.detail["before"] == {}
    assert entry.detail["after"]["kinds"]["no_face"]["min_duration_ms"] == 2000
    assert run_queued_jobs(api.context, open_id) == 1  # `proctor worker`: the 2.4 s without a face is now a flag
    with api.context.db() as db:
        kinds = db.scalars(select(FlagSegment.kind).where(FlagSegment.session_id == open_id)).all()
    assert kinds == ["no_face"]


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ({"kinds": {"no_face": {"min_duration_ms": -1}}}, "validation_error", "kinds.no_face.min_duration_ms"),
        ({"kinds": {"phone": {}}}, "validation_error", "kinds.phone"),
        ({"kinds": {"no_face": {"threshold": 1}}}, "validation_error", "kinds.no_face.threshold"),
        ({"sensitivity": 20}, "validation_error", "sensitivity"),
        ({"kinds": {"no_face": {"weight": False}}}, "validation_error", "kinds.no_face.weight"),  # not the number 0
        ({"looking_away": {"yaw_deg": 0}}, "validation_error", "looking_away.yaw_deg"),
        ({"strictness": 3}, "validation_error", "strictness"),
        ({"kinds": {"looking_away": {"enter": 0.2, "exit": 0.4}}}, "policy_invalid", "kinds.looking_away.exit"),
    ],
)
def test_a_policy_that_cannot_be_applied_is_refused_naming_the_field(
    caller: Caller, body: dict[str, Any], code: str, names: str
) -> None:
    response = put(caller, "exam-refused", body)
    assert problem(response) == (422, code)
    assert names in response.json()["detail"]
    if code == "policy_invalid":
        assert response.json()["details"] == {
            "field": names,
            "allowed": "must be <= enter (0.2): need 0 <= exit <= enter <= 1",
        }
    assert problem(caller.http.get("/v1/exams/exam-refused/policy")) == (404, "exam_not_found"), "nothing was made"


def test_another_platforms_exam_is_not_found(api: Api, caller: Caller) -> None:
    assert put(caller, "exam-mine", {"sensitivity": 2}).status_code == 200
    _, other_key = api.tenant()
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {other_key}"}) as other:
        assert problem(other.get("/v1/exams/exam-mine/policy")) == (404, "exam_not_found")
        theirs = other.put("/v1/exams/exam-mine/policy", json={"sensitivity": 0.5}).json()
        assert theirs["version"] == 1, "its own exam of that name"
    assert caller.http.get("/v1/exams/exam-mine/policy").json()["policy"]["sensitivity"] == 2
    assert problem(caller.http.put("/v1/exams/bad id!/policy", json={})) == (422, "validation_error")
