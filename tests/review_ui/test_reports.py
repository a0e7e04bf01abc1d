"""Exam reports for integrity officers: outcomes, flags against decisions, sessions, CSV; scoped and audited."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import select

from core.tables import AuditEvent, ExamSession
from tests.review_ui.conftest import World
from tests.review_ui.test_review import flag_ids


def exam_of(world: World, label: str) -> str:
    with world.context.db() as db:
        return db.scalars(select(ExamSession.exam_id).where(ExamSession.id == world.sessions[label])).one()


def kind_cells(page: str, kind: str) -> list[str]:
    """The numbers of one flag kind's row in the report's flag table."""
    row = page.split(f'data-kind="{kind}">', 1)[1].split("</tr>", 1)[0]
    return re.findall(r"<td>(.*?)</td>", row)[1:]


def test_an_exam_report_tallies_outcomes_and_what_reviewers_made_of_each_flag_kind(world: World) -> None:
    base = f"/review/sessions/{world.sessions['a']}"
    reviewer = world.browser("reviewer_a")
    reviewer.submit(f"{base}/claim")
    no_face, two_faces, _away = flag_ids(world, "a")
    assert reviewer.submit(f"{base}/flags/{no_face}/decision", decision="dismissed", note="a cat").is_success
    assert reviewer.submit(f"{base}/flags/{two_faces}/decision", decision="confirmed").is_success
    assert reviewer.submit(f"{base}/flags", kind="looking_away", start_s="20", end_s="22", note="notes").is_success
    officer = world.browser("officer_a")
    exam = exam_of(world, "a")

    before = officer.page(f"/review/reports/{exam}").text
    assert 'data-outcome="not yet reviewed"><th>not yet reviewed</th><td>1</td>' in before
    # per kind: detector flags, confirmed, dismissed, undecided, confirm rate, added by reviewers
    assert kind_cells(before, "no_face") == ["1", "0", "1", "0", "0%", "0"]
    assert kind_cells(before, "multiple_faces") == ["1", "1", "0", "0", "100%", "0"]
    assert kind_cells(before, "looking_away") == ["1", "0", "0", "1", "-", "1"]

    assert reviewer.submit(f"{base}/outcome", outcome="Rules Violation", note="second person").is_success
    pending = officer.page(f"/review/reports/{exam}").text
    assert 'data-outcome="awaiting second review"><th>awaiting second review</th><td>1</td>' in pending

    second = world.browser("reviewer_a2")
    second.submit(f"{base}/claim")
    assert second.submit(f"{base}/second-review", verdict="confirm", note="agreed").json()["status"] == "final"
    final = officer.page(f"/review/reports/{exam}").text
    assert 'data-outcome="Rules Violation"><th>Rules Violation</th><td>1</td>' in final
    assert 'data-outcome="not yet reviewed"><th>not yet reviewed</th><td>0</td>' in final

    exported = officer.get(f"/review/reports/{exam}?format=csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    (line,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert line["session_id"] == world.sessions["a"] and line["state"] == "reviewed"
    assert (line["flags"], line["confirmed"], line["dismissed"], line["reviewer_added"]) == ("3", "1", "1", "1")
    assert line["outcome"] == "Rules Violation" and line["decided_at"]
    assert (line["reviewer"], line["second_reviewer"]) == (world.users["reviewer_a"], world.users["reviewer_a2"])
    with world.context.db() as db:
        views = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "view_report", AuditEvent.tenant_id == world.tenant_ids["a"])
            .order_by(AuditEvent.id)
        ).all()
    assert [v.detail["format"] for v in views] == ["html", "html", "html", "csv"]
    assert all(v.actor == f"user:{world.users['officer_a']}" and v.detail["exam_id"] == exam for v in views)


def test_reports_list_only_the_exams_in_scope_and_refuse_reviewers(world: World) -> None:
    exam_a, exam_b = exam_of(world, "a"), exam_of(world, "b")
    officer = world.browser("officer_a")
    index = officer.page("/review/reports").text
    assert f'data-exam="{exam_a}"' in index and f'data-exam="{exam_b}"' not in index
    assert officer.get(f"/review/reports/{exam_b}").status_code == 404  # exactly like an exam that does not exist
    assert officer.get("/review/reports/no-such-exam").status_code == 404
    assert officer.get(f"/review/reports/{exam_b}?format=csv").status_code == 404
    admin = world.browser("admin").page("/review/reports").text
    assert f'data-exam="{exam_a}"' in admin and f'data-exam="{exam_b}"' in admin
    reviewer = world.browser("reviewer_a")
    assert reviewer.get("/review/reports").status_code == 403
    assert reviewer.get(f"/review/reports/{exam_a}").status_code == 403
    assert "/review/reports" not in reviewer.page("/review/queue").text
    assert "/review/reports" in officer.page("/review/queue").text


def test_erased_sessions_are_counted_but_never_listed(world: World) -> None:
    exam = exam_of(world, "a")
    with world.context.db() as db:
        session = db.get(ExamSession, world.sessions["a"])
        assert session is not None
        session.state = "deleted"
        db.commit()
    officer = world.browser("officer_a")
    page = officer.page(f"/review/reports/{exam}").text
    assert world.sessions["a"] not in page and "deleted <b>1</b>" in page
    exported = officer.get(f"/review/reports/{exam}?format=csv").text
    assert world.sessions["a"] not in exported and len(exported.strip().splitlines()) == 1
