"""Exam policies in the review UI: the form, the preview from stored signals, applying it, accommodations; officers
and admins only, within their scope. Over real HTTP, with the pure form parser's cases as a table."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from core.exam_policy import ExamPolicy, PolicyInvalid
from core.tables import AuditEvent, Exam, ExamSession, FlagSegment, Job, SessionReview
from core.vocabulary import FlagKind, JobKind
from review_ui.policies import form_values, policy_from_form
from tests.review_ui.conftest import World
from tests.support.stored_signals import episode_signals, run_queued_jobs, store_processed_session

EXAM = "exam-pol"


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"sensitivity": ""}, "sensitivity", "is required"),
        ({"sensitivity": "11"}, "sensitivity", "from 0 to 10"),
        ({"no_face.min_duration_s": "-1"}, "no face: minimum duration (s)", "from 0 to 3600"),
        ({"no_face.min_duration_s": "three"}, "no face: minimum duration (s)", "from 0 to 3600"),
        ({"camera_blocked.min_duration_s": ""}, "camera blocked: minimum duration (s)", "is required"),
        ({"looking_away.yaw_deg": "0"}, "looking away: yaw (degrees)", "more than 0"),
        ({"looking_away.pitch_deg": "400"}, "looking away: pitch (degrees)", "from 0 to 180"),
        ({"allowed_aids": "x" * 2001}, "allowed_aids", "at most 2000 characters"),
    ],
)
def test_the_form_refuses_a_value_naming_its_field_and_what_it_allows(
    changes: dict[str, str], field: str, allowed: str
) -> None:
    with pytest.raises(PolicyInvalid) as refused:
        policy_from_form(form_values(ExamPolicy()) | changes, ExamPolicy())
    assert refused.value.field == field and allowed in str(refused.value)


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({}, "kinds.no_face.min_duration_ms", 3000),
        ({"no_face.min_duration_s": "2"}, "kinds.no_face.min_duration_ms", 2000),
        ({"multiple_faces.enabled": ""}, "kinds.multiple_faces.enabled", False),
        ({"sensitivity": "2"}, "sensitivity", 2.0),
        ({"looking_away.pitch_deg": "35"}, "looking_away.pitch_deg", 35.0),
        ({"allowed_aids": " a calculator "}, "allowed_aids", "a calculator"),
    ],
)
def test_the_form_reads_back_as_the_policy_it_shows(changes: dict[str, str], field: str, expected: Any) -> None:
    current = ExamPolicy.from_json({"kinds": {"looking_away": {"enter": 0.6}}})  # what the form does not show
    read = policy_from_form(form_values(current) | changes, current).to_json()
    for part in field.split("."):
        read = read[part]
    assert read == expected
    kept = policy_from_form(form_values(current) | changes, current).kinds[FlagKind.LOOKING_AWAY]
    assert kept.enter == 0.6, "what the form does not show is kept"


def exam_with_sessions(world: World) -> tuple[str, str, str]:
    """Tenant a's exam with a session processed and one whose review is final: (exam id, open, final)."""
    signals = episode_signals(60, no_face=[(10.0, 12.4), (20.0, 25.0)], two_faces=[(40.0, 43.0)])
    open_id = store_processed_session(world.context, world.tenant_ids["a"], EXAM, signals)
    final_id = store_processed_session(world.context, world.tenant_ids["a"], EXAM, signals)
    with world.context.db() as db:
        final = db.get(ExamSession, final_id)
        assert final is not None
        final.state = "reviewed"
        db.add(SessionReview(session_id=final_id, outcome="Clean", status="final", reviewer_id=None))
        db.commit()
        return final.exam_id, open_id, final_id


def form(**changes: str) -> dict[str, str]:
    """The policy form as it shows the defaults, with `changes` (an unticked box sends nothing, like "")."""
    return form_values(ExamPolicy()) | changes


def run_rescores(world: World, *session_ids: str) -> int:
    return sum(run_queued_jobs(world.context, session_id) for session_id in session_ids)


def test_an_officer_previews_and_applies_a_policy_and_sees_it_rescored(world: World) -> None:
    exam_id, open_id, final_id = exam_with_sessions(world)
    officer = world.browser("officer_a")
    page = officer.page(f"/review/exams/{exam_id}/policy")
    assert page.status_code == 200 and "The defaults" in page.text
    assert 'name="no_face.min_duration_s" id="no_face-min" type="number"' in page.text
    assert re.search(r'name="no_face.min_duration_s"[^>]*value="3"', page.text), "the current values as defaults"
    assert re.search(r'name="multiple_faces.enabled"[^>]*checked', page.text)

    change = form(**{"no_face.min_duration_s": "2", "multiple_faces.enabled": ""})
    preview = officer.post(f"/review/exams/{exam_id}/policy/preview", data={"csrf_token": officer.csrf, **change})
    assert preview.status_code == 200, preview.text
    rows = dict(
        re.findall(r'<tr data-kind="([a-z_]+)"><th scope="row">[^<]*</th>((?:<td[^>]*>\d+</td>){4})', preview.text)
    )
    counts = {kind: [int(n) for n in re.findall(r">(\d+)<", cells)] for kind, cells in rows.items()}
    assert counts["no_face"] == [1, 2, 1, 0] and counts["multiple_faces"] == [1, 0, 0, 1]
    assert "Computed on 1 of the 1 session that applying would re-score" in preview.text
    assert "1 would not be re-scored" in preview.text
    with world.context.db() as db:
        assert db.get(Exam, exam_id).policy == {}, "a preview changes nothing"  # type: ignore[union-attr]

    as_json = officer.post(
        f"/review/exams/{exam_id}/policy/preview",
        data={"csrf_token": officer.csrf, **change},
        headers={"Accept": "application/json"},
    ).json()["preview"]
    assert (as_json["previewed"], as_json["changed"]) == (1, 1)
    assert as_json["not_rescored"] == [{"session_id": final_id, "why": "final (reopen to re-score)"}]

    applied = officer.post(f"/review/exams/{exam_id}/policy", data={"csrf_token": officer.csrf, **change})
    assert applied.status_code == 303 and applied.headers["location"] == f"/review/exams/{exam_id}/policy"
    with world.context.db() as db:
        policy = ExamPolicy.from_json(db.get(Exam, exam_id).policy)  # type: ignore[union-attr]
        assert policy.kinds[FlagKind.NO_FACE].min_duration_ms == 2000
        assert not policy.kinds[FlagKind.MULTIPLE_FACES].enabled
        jobs = db.scalars(select(Job.session_id).where(Job.kind == JobKind.RESCORE.value)).all()
        assert open_id in jobs and final_id not in jobs
        entry = db.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "exam_policy_applied", AuditEvent.tenant_id == world.tenant_ids["a"]
            )
        )
        assert entry is not None and entry.actor == f"user:{world.users['officer_a']}"
        assert entry.detail["before"] == {} and entry.detail["after"]["kinds"]["no_face"]["min_duration_ms"] == 2000
        assert (entry.detail["version"], entry.detail["rescore_queued"], entry.detail["not_rescored"]) == (1, 1, 1)

    waiting = officer.page(f"/review/exams/{exam_id}/policy").text
    assert "1 session still to re-score" in waiting and "Version <b>1</b>" in waiting
    assert f'data-session="{final_id}"' in waiting and "not re-scored: final (reopen to re-score)" in waiting
    assert run_rescores(world, open_id, final_id) == 1
    done = officer.page(f"/review/exams/{exam_id}/policy").text
    assert "Every session that may be re-scored has been" in done
    line = re.search(rf'<tr data-session="{open_id}">(.*?)</tr>', done, re.S)
    # The cells after the candidate's and the attempt's (a random attempt id can be all digits): version, added,
    # removed.
    assert line is not None and re.findall(r"<td>([^<]*)</td>", line[1])[1:4] == ["2", "1", "1"]
    with world.context.db() as db:
        kinds = db.scalars(select(FlagSegment.kind).where(FlagSegment.session_id == open_id)).all()
    assert sorted(kinds) == ["no_face", "no_face"]


def test_a_refused_value_is_shown_in_the_form_with_what_was_typed(world: World) -> None:
    exam_id, _, _ = exam_with_sessions(world)
    officer = world.browser("officer_a")
    officer.page(f"/review/exams/{exam_id}/policy")
    bad = form(**{"no_face.min_duration_s": "-1"})
    for path in (f"/review/exams/{exam_id}/policy/preview", f"/review/exams/{exam_id}/policy"):
        refused = officer.post(path, data={"csrf_token": officer.csrf, **bad})
        assert refused.status_code == 422
        assert (
            'role="alert" id="policy-error">no face: minimum duration (s) must be a number from 0 to 3600'
            in refused.text
        )
        assert 'id="no_face-min" type="number" step="0.1" min="0"' in refused.text and 'value="-1"' in refused.text
    as_json = officer.post(
        f"/review/exams/{exam_id}/policy",
        data={"csrf_token": officer.csrf, **bad},
        headers={"Accept": "application/json"},
    )
    assert as_json.status_code == 422 and "no face: minimum duration (s)" in as_json.json()["detail"]
    with world.context.db() as db:
        assert db.get(Exam, exam_id).policy == {}  # type: ignore[union-attr]


def test_only_officers_and_admins_reach_a_policy_and_only_in_their_scope(world: World) -> None:
    exam_id, open_id, _ = exam_with_sessions(world)
    with world.context.db() as db:
        other_exam = db.get(ExamSession, world.sessions["b"]).exam_id  # type: ignore[union-attr]
    reviewer = world.browser("reviewer_a")
    assert reviewer.get(f"/review/exams/{exam_id}/policy").status_code == 403
    refused = reviewer.submit(f"/review/sessions/{open_id}/accommodation", **{"off.no_face": "on"})
    assert refused.status_code == 403
    officer = world.browser("officer_a")
    assert officer.get(f"/review/exams/{other_exam}/policy").status_code == 404, "another tenant's exam"
    assert officer.get("/review/exams/no-such-exam/policy").status_code == 404
    assert officer.submit(f"/review/exams/{other_exam}/policy", sensitivity="1").status_code == 404
    assert world.browser("admin").get(f"/review/exams/{other_exam}/policy").status_code == 200
    report = officer.page(f"/review/reports/{exam_id}").text
    assert f'href="/review/exams/{exam_id}/policy" id="policy-link"' in report


def test_an_accommodation_is_applied_at_rescoring_and_shown_to_the_reviewer(world: World) -> None:
    exam_id, open_id, _ = exam_with_sessions(world)
    officer = world.browser("officer_a")
    officer.page(f"/review/sessions/{open_id}")
    saved = officer.submit(
        f"/review/sessions/{open_id}/accommodation", **{"off.multiple_faces": "on", "note": "medical: a carer sits in"}
    )
    assert saved.status_code == 200 and saved.json()["rescore_queued"] is True
    unknown = officer.submit(f"/review/sessions/{open_id}/accommodation", **{"off.phone": "on"})
    assert unknown.status_code == 422 and "must be flag kinds" in unknown.json()["detail"]
    assert run_rescores(world, open_id) == 1

    page = world.browser("reviewer_a").page(f"/review/sessions/{open_id}").text
    assert 'id="accommodation"' in page and "not flagged for this candidate: multiple faces" in page
    assert "medical: a carer sits in" in page and f"set by {world.users['officer_a']}" in page
    assert "1 removed" in page and "flag version 2" in page
    assert 'class="set-accommodation"' not in page, "reviewers see it, officers set it"
    with world.context.db() as db:
        kinds = db.scalars(select(FlagSegment.kind).where(FlagSegment.session_id == open_id)).all()
        entry = db.scalar(
            select(AuditEvent).where(AuditEvent.session_id == open_id, AuditEvent.action == "accommodation_set")
        )
    assert "multiple_faces" not in kinds
    assert entry is not None and entry.detail["kinds_off"] == ["multiple_faces"] and entry.detail["note_changed"]
    assert "carer" not in str(entry.detail), "the trail never holds the note's text"

    officer.submit(f"/review/exams/{exam_id}/policy", **form(allowed_aids="one sheet"))
    assert run_rescores(world, open_id) == 0, "the aids allowed raise no other flags: nothing to re-score"
    assert "<b>Allowed aids:</b> one sheet" in world.browser("reviewer_a").page(f"/review/sessions/{open_id}").text
