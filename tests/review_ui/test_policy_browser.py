"""In a real browser: an integrity officer goes from the exam's report to its flagging policy, changes it, previews
the change, applies it, and once the workers have re-scored the sessions, sees the new flags. Clicks only."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from core.tables import ExamSession, SessionReview
from tests.review_ui.conftest import World
from tests.review_ui.test_browser import assert_accessible, chromium, new_page, shot, sign_in
from tests.support.stored_signals import episode_signals, run_queued_jobs, store_processed_session

__all__ = ["chromium", "new_page"]  # the browser fixtures this module uses, as test_browser.py defines them


def test_an_officer_edits_previews_and_applies_a_policy_and_sees_the_rescored_flags(
    new_page: Callable[..., Page], world: World
) -> None:
    signals = episode_signals(60, no_face=[(10.0, 12.4), (20.0, 25.0)], two_faces=[(40.0, 43.0)])
    open_id = store_processed_session(
        world.context, world.tenant_ids["a"], "exam-policy", signals, candidate_id="c-open"
    )
    final_id = store_processed_session(world.context, world.tenant_ids["a"], "exam-policy", signals)
    with world.context.db() as db:
        final = db.get(ExamSession, final_id)
        assert final is not None
        final.state = "reviewed"
        db.add(SessionReview(session_id=final_id, outcome="Clean", status="final", reviewer_id=None))
        db.commit()
        exam_id = final.exam_id

    page = new_page()
    sign_in(page, world, "officer_a")
    page.click("header nav a:has-text('Reports')")
    page.click(f"tr[data-exam='{exam_id}'] a:has-text('Report')")
    page.click("#policy-link")
    expect(page.locator("h1")).to_contain_text("Flagging policy: exam exam-policy")
    expect(page.locator("#no_face-min")).to_have_value("3")
    expect(page.locator("#multiple_faces-enabled")).to_be_checked()
    shot(page, "20-policy")

    page.fill("#no_face-min", "2")  # episodes of no face from 2 s, and no multiple-faces flags
    page.uncheck("#multiple_faces-enabled")
    page.click("#preview")
    preview = page.locator("#policy-preview")
    expect(preview).to_be_visible()
    expect(preview.locator("tr[data-kind='no_face'] td.added")).to_have_text("1")
    expect(preview.locator("tr[data-kind='multiple_faces'] td.removed")).to_have_text("1")
    expect(page.locator("#preview-summary")).to_contain_text("1 would not be re-scored")
    expect(page.locator("#no_face-min")).to_have_value("2")  # the form keeps the change to apply
    shot(page, "21-policy-preview")
    assert_accessible(page, "an exam's policy, with a preview")

    page.click("#apply")
    expect(page.locator("#policy-version")).to_contain_text("Version 1")
    expect(page.locator("#rescore-waiting")).to_contain_text("1 session still to re-score")
    expect(page.locator(f".not-rescored li[data-session='{final_id}']")).to_contain_text(
        "not re-scored: final (reopen to re-score)"
    )
    assert run_queued_jobs(world.context, open_id) == 1  # what `proctor worker` does meanwhile

    page.click("#refresh")
    expect(page.locator("#rescore-done")).to_be_visible()
    expect(page.locator(f"table.rescored tr[data-session='{open_id}'] td").nth(3)).to_have_text("1")  # added
    shot(page, "22-policy-applied")
    assert_accessible(page, "an exam's policy, applied")
    page.click(f"table.rescored tr[data-session='{open_id}'] a")
    expect(page).to_have_url(f"{world.url}/review/sessions/{open_id}")
    expect(page.locator("#flags .flag-row .kind")).to_have_text(["no face", "no face"])
    expect(page.locator(".flag-version")).to_contain_text("1 added, 1 removed, 1 kept with their decisions")
    shot(page, "23-session-rescored")
    assert_accessible(page, "a re-scored session, as an officer sees it")
