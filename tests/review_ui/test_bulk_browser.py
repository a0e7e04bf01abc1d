"""In a real browser (issue 20): a reviewer ticks two rows of the queue and marks them Clean, and an integrity
officer assigns a session to a reviewer with the bulk bar's controls. Clicks and menus only, no typed URLs."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect
from sqlalchemy import select

from core.tables import ExamSession, SessionReview, User
from tests.review_ui.conftest import World
from tests.review_ui.test_browser import assert_accessible, chromium, database_url, new_page, shot, sign_in
from tests.review_ui.test_bulk_actions import add_session, candidate

# The browser fixtures this module uses, as test_browser.py defines them (SQLite alone, one Chromium a module).
__all__ = ["chromium", "database_url", "new_page"]


def test_a_reviewer_marks_two_sessions_clean_and_an_officer_assigns_one(
    new_page: Callable[..., Page], world: World
) -> None:
    first, second, undecided = (
        add_session(world, "a"),
        add_session(world, "a", flags=1, dismissed=True),
        add_session(world, "a", flags=1),
    )
    page = new_page()
    sign_in(page, world, "reviewer_a")
    expect(page.locator("#select-all")).to_be_visible()  # the script shows it; without one each row is ticked alone
    assert_accessible(page, "the queue with its bulk bar")
    page.check(f"tr[data-session='{first}'] input.select-row")
    page.check(f"tr[data-session='{second}'] input.select-row")
    expect(page.locator("#select-all")).to_have_js_property("indeterminate", True)
    page.select_option("#bulk-action", "clean")
    page.click("#bulk-apply")
    expect(page.locator("#bulk-summary")).to_have_text("Marked Clean 2")
    shot(page, "30-bulk-clean")
    expect(page.locator(f"tr[data-session='{first}']")).to_have_count(0)  # reviewed: off the "to review" tab
    expect(page.locator(f"tr[data-session='{undecided}']")).to_have_count(1)

    page.check("#select-all")  # every row of the page, then back to none
    expect(page.locator(f"tr[data-session='{undecided}'] input.select-row")).to_be_checked()
    page.uncheck("#select-all")
    expect(page.locator(f"tr[data-session='{undecided}'] input.select-row")).not_to_be_checked()

    officer = new_page()
    sign_in(officer, world, "officer_a")
    officer.check(f"tr[data-session='{undecided}'] input.select-row")
    officer.select_option("#bulk-action", "assign")
    officer.select_option("#bulk-assignee", label=world.users["reviewer_a2"])
    assert_accessible(officer, "the officer's bulk bar, filled in")
    officer.click("#bulk-apply")
    expect(officer.locator("#bulk-summary")).to_have_text(f"Assigned 1 to {world.users['reviewer_a2']}")
    shot(officer, "31-bulk-assign")

    page.select_option("#bulk-action", "clean")  # the reviewer, on the page they had: someone else has it now
    page.check(f"tr[data-session='{undecided}'] input.select-row")
    page.click("#bulk-apply")
    expect(page.locator("#bulk-summary")).to_have_text(
        f"Marked Clean 0; skipped 1: {candidate(world, undecided)} is claimed by {world.users['reviewer_a2']}"
    )
    with world.context.db() as db:
        for session_id in (first, second):
            review = db.get(SessionReview, session_id)
            assert review is not None and review.outcome == "Clean"
        assignee = db.scalar(select(User.id).where(User.username == world.users["reviewer_a2"]))
        assigned = db.get(ExamSession, undecided)
        assert assigned is not None and assigned.claimed_by == assignee
