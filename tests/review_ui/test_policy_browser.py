"""In a real browser, an integrity officer's journey through issue 20, clicks only: from the exam's report to its
flagging policy, which they change, preview and apply, and once the workers have re-scored the sessions, the new
flags; then an appeal against a session whose review was final (and so was not re-scored): the officer reopens
it, the workers re-score it under the new policy, a reviewer decides it again, and the platform receives the new
outcome through the results API and its webhook; last, the officer downloads the session's incident report (PDF)
and the exam's report (CSV), both with the new outcome."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pypdfium2
from playwright.sync_api import Page, expect
from sqlalchemy import select

from core.db import utcnow
from core.tables import ExamSession, FlagSegment
from review_ui.webhooks import WebhookSender, new_secret, verify
from tests.review_ui.conftest import World, set_webhook, webhook_policy
from tests.review_ui.test_browser import assert_accessible, chromium, database_url, new_page, shot, sign_in
from tests.support.stored_signals import episode_signals, run_queued_jobs, store_processed_session

# The browser fixtures this module uses, as test_browser.py defines them (SQLite alone, one Chromium a module).
__all__ = ["chromium", "database_url", "new_page"]

APPEAL = "the candidate appeals: the second face at 40 s was the invigilator's"
NEW_OUTCOME_NOTE = "away from the screen for 5 s at 20 s; the second face was the invigilator"
Received = list[tuple[dict[str, str], bytes]]


def finalise_as_clean(world: World, session_id: str) -> None:
    """What a reviewer did before the policy changed: both flags dismissed, the session Clean (version 1)."""
    base = f"/review/sessions/{session_id}"
    with world.context.db() as db:
        flags = db.scalars(select(FlagSegment.id).where(FlagSegment.session_id == session_id)).all()
    reviewer = world.browser("reviewer_a")
    assert reviewer.submit(f"{base}/claim").is_success
    for flag in flags:
        assert reviewer.submit(f"{base}/flags/{flag}/decision", decision="dismissed").is_success
    assert reviewer.submit(f"{base}/outcome", outcome="Clean").json()["status"] == "final"


def deliver(sender: WebhookSender, received: Received, secret: str) -> dict[str, Any]:
    """Run the webhook sender once, as `proctor serve` does every second; the one signed event the platform got.
    The sender runs its own event loop, so on a thread of its own: Playwright's holds this one."""
    before = len(received)
    with ThreadPoolExecutor(1) as thread:
        thread.submit(sender.send_due).result(timeout=30)
    assert len(received) == before + 1, f"the platform received {len(received) - before} webhooks, not 1"
    headers, body = received[-1]
    assert verify(secret, headers, body, utcnow())
    event: dict[str, Any] = json.loads(body)
    return event


def download(page: Page, link: str) -> tuple[str, bytes]:
    """Click `link` and wait for the download it starts: (the file name the browser offers, its bytes)."""
    with page.expect_download() as started:
        page.click(link)
    got = started.value
    return got.suggested_filename, Path(got.path()).read_bytes()


def test_an_officer_changes_a_policy_reopens_a_final_review_and_downloads_the_new_outcome(
    new_page: Callable[..., Page], world: World, webhook_receiver: tuple[str, Received]
) -> None:
    signals = episode_signals(60, no_face=[(10.0, 12.4), (20.0, 25.0)], two_faces=[(40.0, 43.0)])
    open_id = store_processed_session(
        world.context, world.tenant_ids["a"], "exam-policy", signals, candidate_id="c-open"
    )
    final_id = store_processed_session(world.context, world.tenant_ids["a"], "exam-policy", signals)
    finalise_as_clean(world, final_id)
    hook_url, received = webhook_receiver
    secret = new_secret()
    set_webhook(world.context, world.tenant_ids["a"], hook_url, secret)  # the platform listens from here on
    sender = WebhookSender(world.context.db, webhook_policy(world.context))
    with world.context.db() as db:
        final = db.get(ExamSession, final_id)
        assert final is not None
        exam_id = final.exam_id

    # 1. The officer edits the exam's policy and previews the change.
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

    # 2. The officer applies it and sees the re-scored flags.
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

    # 3. The officer reopens the final review for an appeal; a reviewer decides it again; the platform receives
    # the reopening, then the new outcome.
    page.click("header nav a:has-text('Reports')")
    page.click(f"tr[data-exam='{exam_id}'] a:has-text('Report')")
    page.click(f"tr[data-session='{final_id}'] a")
    expect(page.locator("#outcome-history li[data-version='1']")).to_contain_text("Clean")
    page.fill("#reopen-reason", APPEAL)
    page.click("form.reopen button[type=submit]")
    expect(page).to_have_url(f"{world.url}/review/sessions/{final_id}")
    expect(page.locator("#state")).to_have_text("in_review")
    expect(page.locator("#under-appeal")).to_contain_text(APPEAL)
    shot(page, "24-review-reopened")
    assert_accessible(page, "a review reopened for an appeal, as an officer sees it")
    reopened = deliver(sender, received, secret)
    assert reopened["event"] == "review.reopened" and reopened["review"]["under_appeal"]
    assert (reopened["review"]["outcome"], reopened["review"]["version"]) == ("Clean", 1)  # it stands meanwhile

    assert run_queued_jobs(world.context, final_id) == 1  # reopened: re-scored under the policy now in force

    reviewer = new_page()
    sign_in(reviewer, world, "reviewer_a2")
    reviewer.click(f"tr[data-session='{final_id}'] button.claim")
    expect(reviewer).to_have_url(f"{world.url}/review/sessions/{final_id}")
    # The flags under the new policy: a new 2.4 s episode of no face, the one version 1 dismissed (its decision
    # kept), and no multiple-faces flag any more.
    expect(reviewer.locator("#flags .flag-row .kind")).to_have_text(["no face", "no face"])
    expect(reviewer.locator(".flag-row[data-index='1'] .decision")).to_have_text("dismissed")
    reviewer.click(".flag-row[data-index='0'] button.confirm")
    expect(reviewer.locator(".flag-row[data-index='0'] .decision")).to_have_text("confirmed")
    reviewer.check("input[name=outcome][value='Suspicious']")
    reviewer.fill("form.outcome textarea[name=note]", NEW_OUTCOME_NOTE)
    reviewer.check("form.outcome input[name=note_shared]")
    reviewer.click("form.outcome button[type=submit]:not([name])")
    expect(reviewer).to_have_url(f"{world.url}/review/queue")

    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['a']}"}) as platform:
        review = platform.get(f"/v1/sessions/{final_id}/review").json()
    assert review["final"] and not review["under_appeal"]
    assert (review["outcome"], review["version"]) == ("Suspicious", 2)
    assert [(h["version"], h["outcome"], h["reopen_reason"]) for h in review["history"]] == [
        (1, "Clean", APPEAL),
        (2, "Suspicious", None),
    ]
    assert [(f["kind"], f["decision"]) for f in review["flags"]] == [
        ("no_face", "confirmed"),
        ("no_face", "dismissed"),
    ]
    assert [c["text"] for c in review["comments"]] == [NEW_OUTCOME_NOTE]
    final_event = deliver(sender, received, secret)
    assert final_event["event"] == "review.final"
    assert (final_event["review"]["outcome"], final_event["review"]["version"]) == ("Suspicious", 2)
    assert final_event["review"]["history"] == review["history"]

    # 4. The officer downloads the session's incident report as a PDF, and the exam's report as a CSV.
    page.click("#incident-report")
    expect(page.locator("#current-outcome")).to_contain_text("Suspicious (final, version 2)")
    shot(page, "25-incident-report")
    name, pdf = download(page, "#download-pdf")
    assert name == f"incident-report-{final_id}.pdf"
    first_page = pypdfium2.PdfDocument(pdf)[0].get_textpage().get_text_range()
    assert final_id in first_page and "Outcome: Suspicious" in first_page and "version 2" in first_page

    page.click("a:has-text('Back to the session')")
    page.click("header nav a:has-text('Reports')")
    page.click(f"tr[data-exam='{exam_id}'] a:has-text('Report')")
    expect(page.locator(f"tr[data-session='{final_id}']")).to_contain_text("Suspicious")
    name, table = download(page, "a:has-text('Export CSV')")
    assert name.startswith("report-") and name.endswith("-exam-policy.csv")
    rows = {row["session_id"]: row for row in csv.DictReader(io.StringIO(table.decode()))}
    assert (rows[final_id]["outcome"], rows[final_id]["state"]) == ("Suspicious", "reviewed")
    assert rows[final_id]["reviewer"] == world.users["reviewer_a2"]
    assert rows[open_id]["outcome"] == "not yet reviewed"
