"""End to end in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium, headless).

Nothing is downloaded: Playwright's Python package brings only its driver, and the browser is the system's.
Screenshots of each step are saved under `test-artifacts/review_ui/` (or $PROCTOR_TEST_ARTIFACTS).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, select

from core.db import utcnow
from core.tables import ExamSession, FlagDecision, FlagSegment, SessionReview
from proctor.samples import SampleSession
from review_ui.webhooks import WebhookSender, new_secret, verify
from tests.review_ui.conftest import (
    FLAGS,
    PASSWORD,
    SAMPLE_S,
    World,
    add_processed_session,
    set_webhook,
    webhook_policy,
)

CHROMIUM = Path(os.environ.get("PROCTOR_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("PROCTOR_TEST_ARTIFACTS", "test-artifacts")) / "review_ui"

if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
    reason = f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (make test does, as root)"
    if os.environ.get("CI"):
        raise RuntimeError(reason)  # in CI a missing browser is a broken setup, not a skip
    pytest.skip(reason, allow_module_level=True)

from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect, sync_playwright  # noqa: E402
from playwright.sync_api import Error as PlaywrightError  # noqa: E402

# Besides Playwright's own switches: no GPU process, and no QUIC probes into this closed network.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic"]
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}
CLOSE_WITHIN_S = 60.0


def process_children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from Linux's /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(roots: set[int]) -> list[int]:
    """The processes `roots` and every process below them."""
    children, found, todo = process_children(), list(roots), list(roots)
    while todo:
        below = children.get(todo.pop(), [])
        found.extend(below)
        todo.extend(below)
    return found


@contextmanager
def killed_if_stuck(seconds: float, roots: set[int]) -> Iterator[threading.Event]:
    """Kill the processes `roots` and those below them if the block has not ended after `seconds`.

    Closing a browser waits for Chromium to exit, with no timeout; a Chromium that never exits would hold
    the test run until CI gives up. The event says whether the kill happened.
    """
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        for pid in process_tree(roots):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    timer = threading.Timer(seconds, kill)
    timer.start()
    try:
        yield killed
    finally:
        timer.cancel()


@pytest.fixture
def database_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    """Browser flows run on SQLite alone (as the recorder's do): every route they click through is tested over
    HTTP on SQLite and PostgreSQL (test_review.py and the rest of this folder), and a flow costs 5-15 s a run."""
    database = tmp_path / "proctor.db"
    shutil.copyfile(migrated_sqlite, database)
    return f"sqlite:///{database}"


@dataclass
class Chromium:
    browser: Browser
    processes: set[int]  # Playwright's driver, which started Chromium: what to kill if closing hangs


def normal_scheduling() -> None:
    """Put this thread, and so what it starts, under Linux's normal time-sharing policy.

    In this sandbox the test process was found running SCHED_FIFO at priority 99 by the time the browser
    tests start (its first threads were not), and Chromium inherits that. Its media threads spin-wait on
    each other; under FIFO a spinning thread never yields to the one it waits for, so a renderer playing
    the VP8 recording livelocked both cores, starving even pytest's timeout: the run hung until CI ended it.
    """
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def scheduling(pid: int) -> int:
    """The process's scheduling policy; SCHED_OTHER for one that has just ended."""
    try:
        return os.sched_getscheduler(pid)
    except ProcessLookupError:
        return os.SCHED_OTHER


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    normal_scheduling()
    before = set(process_children().get(os.getpid(), []))
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    driver = set(process_children().get(os.getpid(), [])) - before
    assert all(scheduling(pid) == os.SCHED_OTHER for pid in process_tree(driver)), "Chromium runs real-time"
    yield Chromium(browser, driver)
    with killed_if_stuck(CLOSE_WITHIN_S, driver) as killed:
        try:
            browser.close()
            playwright.stop()
        except PlaywrightError:
            if not killed.is_set():
                raise
    if killed.is_set():
        warnings.warn(f"Chromium did not close within {CLOSE_WITHIN_S:.0f} s and was killed", stacklevel=1)


@pytest.fixture
def new_page(chromium: Chromium) -> Iterator[Callable[..., Page]]:
    """Opens a page in a browser context of its own (a user of their own); closes them all after the test."""
    contexts: list[BrowserContext] = []

    def open_page(viewport: ViewportSize = VIEWPORT) -> Page:
        contexts.append(chromium.browser.new_context(viewport=viewport))
        return contexts[-1].new_page()

    yield open_page
    with killed_if_stuck(CLOSE_WITHIN_S, chromium.processes):
        for context in contexts:
            context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, world: World, user: str) -> None:
    page.goto(f"{world.url}/review/queue")
    expect(page).to_have_url(f"{world.url}/review/login?next=/review/queue")
    page.fill("input[name=username]", world.users[user])
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{world.url}/review/queue")


def current_time(page: Page) -> float:
    value: float = page.evaluate("document.getElementById('webcam').currentTime")
    return value


@pytest.mark.slow
def test_reviewers_take_a_session_from_queue_to_a_confirmed_rules_violation(
    new_page: Callable[..., Page], world: World, webhook_receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    hook_url, received = webhook_receiver
    secret = new_secret()
    set_webhook(world.context, world.tenant_ids["a"], hook_url, secret)
    sender = WebhookSender(world.context.db, webhook_policy(world.context, max_attempts=3, backoff_s=0.5))
    sending = threading.Thread(target=sender.run, kwargs={"poll_s": 0.2}, daemon=True)
    sending.start()
    session_id = world.sessions["a"]
    try:
        first = new_page()
        sign_in(first, world, "reviewer_a")
        shot(first, "01-queue")
        first.click(f"tr[data-session='{session_id}'] button.claim")
        expect(first).to_have_url(f"{world.url}/review/sessions/{session_id}")
        # Predicates are functions: Playwright runs a bare expression through eval() in the page, which the
        # review UI's Content-Security-Policy (no 'unsafe-eval') refuses, as it should.
        first.wait_for_function("() => document.getElementById('webcam').readyState >= 1")
        shot(first, "02-session")

        # Click the second flag on the timeline: the video jumps to 2 s before it.
        first.click("#timeline .flag[data-index='1']")
        first.wait_for_function(
            "() => Math.abs(document.getElementById('webcam').currentTime - %f) < 0.3" % (FLAGS[1][1] - 2)
        )
        assert abs(current_time(first) - (FLAGS[1][1] - 2)) < 0.3

        # Keyboard: k = previous flag, x = dismiss it and go to the next; c = confirm it; n = note, Esc, c.
        first.keyboard.press("k")
        first.wait_for_function(
            "() => Math.abs(document.getElementById('webcam').currentTime - %f) < 0.3" % (FLAGS[0][1] - 2)
        )
        first.keyboard.press("x")
        expect(first.locator(".flag-row[data-index='0'] .decision")).to_have_text("dismissed")
        first.wait_for_function(  # on to the next flag: the video is 2 s before it
            "() => Math.abs(document.getElementById('webcam').currentTime - %f) < 0.3" % (FLAGS[1][1] - 2)
        )
        first.keyboard.press("c")
        expect(first.locator(".flag-row[data-index='1'] .decision")).to_have_text("confirmed")
        first.keyboard.press("n")
        first.keyboard.type("looks at a second screen")
        first.keyboard.press("Escape")
        first.click(".flag-row[data-index='2'] input.note-shared")  # this note is for the platform too
        first.keyboard.press("c")  # the tick hands the keys back
        expect(first.locator(".flag-row[data-index='2'] .decision")).to_have_text("confirmed")
        first.keyboard.press("k")
        first.keyboard.press("k")  # back to the first flag: 2.8 s into the 24 s recording
        first.keyboard.press(" ")  # play, at up to 4x
        first.focus("#rate")  # as a click on the menu leaves it
        first.select_option("#rate", "4")
        first.wait_for_function("() => !document.getElementById('webcam').paused")
        assert first.evaluate("document.getElementById('webcam').playbackRate") == 4
        first.keyboard.press(" ")  # the Speed menu hands the keys back: space pauses, before the end
        first.wait_for_function(
            "() => document.getElementById('webcam').paused && !document.getElementById('webcam').ended"
        )
        shot(first, "03-decided")

        first.check("input[name=outcome][value='Rules Violation']")
        first.fill("form.outcome textarea[name=note]", "a second person helps from 11 s")
        first.click("form.outcome button[type=submit]:not([name])")
        expect(first).to_have_url(f"{world.url}/review/queue")
        first.click("button:has-text('Log out')")
        expect(first).to_have_url(f"{world.url}/review/login")

        second = new_page()
        sign_in(second, world, "reviewer_a2")
        second.click("a[data-status='awaiting_second']")
        shot(second, "04-awaiting-second")
        second.click(f"tr[data-session='{session_id}'] button.claim")
        expect(second.locator("#review-status")).to_contain_text("awaiting second")
        second.fill("form.second textarea[name=note]", "agreed: two people")
        second.click("form.second input[name=note_shared]")
        second.click("form.second button[value=confirm]")
        expect(second).to_have_url(f"{world.url}/review/queue")
        second.goto(f"{world.url}/review/sessions/{session_id}")
        expect(second.locator("#outcome")).to_have_text("Rules Violation")
        expect(second.locator("#review-status")).to_contain_text("final")
        shot(second, "05-final")

        with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['a']}"}) as platform:
            review = platform.get(f"/v1/sessions/{session_id}/review").json()
        assert review["final"] and review["outcome"] == "Rules Violation"
        assert [f["decision"] for f in review["flags"]] == ["dismissed", "confirmed", "confirmed"]
        assert review["flags"][2]["note"] == "looks at a second screen"
        # The first reviewer's outcome note was not shared; the second reviewer's was.
        assert [(c["role"], c["text"]) for c in review["comments"]] == [("second_reviewer", "agreed: two people")]

        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(received) == 1
        headers, body = received[0]
        assert verify(secret, headers, body, utcnow())
        assert b'"outcome": "Rules Violation"' in body

        # The integrity officer reads the exam's report: the outcome, and what reviewers made of each flag.
        officer = new_page()
        sign_in(officer, world, "officer_a")
        officer.click("header nav a:has-text('Reports')")
        officer.click("tr[data-exam] a:has-text('Report')")
        expect(officer.locator("tr[data-outcome='Rules Violation'] td")).to_have_text("1")
        expect(officer.locator("tr[data-kind='no_face'] td").nth(3)).to_have_text("1")  # dismissed
        expect(officer.locator("tr[data-kind='multiple_faces'] td").nth(5)).to_have_text("100%")  # confirm rate
        expect(officer.locator(f"tr[data-session='{session_id}']")).to_contain_text("Rules Violation")
        shot(officer, "06-exam-report")
    finally:
        sender.stop.set()
        sending.join(timeout=5)


def test_the_reviewer_sees_the_enrolment_photo_beside_the_session(new_page: Callable[..., Page], world: World) -> None:
    """Through the queue as a reviewer would: the identity panel with the enrolment photo, loaded."""
    import cv2
    import numpy as np

    face = cv2.imencode(".jpg", np.full((120, 100, 3), (90, 120, 160), np.uint8))[1].tobytes()
    from tests.review_ui.conftest import enrol_with_identity

    enrol_with_identity(world, "a", face)
    page = new_page()
    sign_in(page, world, "reviewer_a")
    page.click(f"tr[data-session='{world.sessions['a']}'] button.claim")
    expect(page).to_have_url(f"{world.url}/review/sessions/{world.sessions['a']}")
    expect(page.locator("#identity")).to_contain_text("8 of 9 face samples match the enrolment")
    page.wait_for_function("() => document.getElementById('enrolment-photo').naturalWidth > 0")
    page.wait_for_function("() => document.getElementById('identity-reference').naturalWidth > 0")
    shot(page, "09-identity")


def test_processes_that_never_end_are_killed_with_those_below_them() -> None:
    """The guard on closing the browser: a stuck process tree (here a shell waiting on its child) is killed."""
    import subprocess

    shell = subprocess.Popen(["sh", "-c", "sleep 600 & wait"])
    time.sleep(0.2)  # the shell starts its child
    tree = process_tree({shell.pid})
    assert len(tree) == 2
    started = time.monotonic()
    with killed_if_stuck(0.5, {shell.pid}) as killed:
        shell.wait(timeout=30)
    assert killed.is_set() and time.monotonic() - started < 10
    time.sleep(0.2)
    assert not Path(f"/proc/{tree[1]}").exists() or "Z" in Path(f"/proc/{tree[1]}/stat").read_text().split(")")[1][:3]


# -- the flows a reviewer clicks through, each once broken while the tests above passed --------------------------


def claim_from_queue(page: Page, world: World, label: str = "a") -> str:
    session_id = world.sessions[label]
    page.click(f"tr[data-session='{session_id}'] button.claim")
    expect(page).to_have_url(f"{world.url}/review/sessions/{session_id}")
    # The address changes before the page's script has run: a key pressed earlier reaches no listener (a loaded
    # machine showed it), so wait for the load event, after which review.js has set its keys up.
    page.wait_for_load_state("load")
    return session_id


def test_the_queue_filter_works_with_the_forms_defaults_and_tabs_and_pages_keep_it(
    new_page: Callable[..., Page], world: World
) -> None:
    page = new_page()
    sign_in(page, world, "reviewer_a")
    row = page.locator(f"tr[data-session='{world.sessions['a']}']")
    page.click("form.filters button[type=submit]")  # every field as the form leaves it: empty means any
    expect(row).to_be_visible()
    expect(page.locator("[role=alert]")).to_have_count(0)

    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    page.fill("input[name=since]", tomorrow)
    page.click("form.filters button[type=submit]")
    expect(page.locator("td.empty")).to_have_text("Nothing here.")
    page.click("a[data-status='reviewed']")
    expect(page.locator("input[name=since]")).to_have_value(tomorrow)
    page.click("a[data-status='to_review']")
    expect(page.locator("td.empty")).to_have_text("Nothing here.")  # the date filter is still applied

    page.fill("input[name=since]", "")
    page.select_option("select[name=kind]", "no_face")
    page.click("form.filters button[type=submit]")
    expect(row).to_be_visible()
    page.click("a[data-status='in_review']")
    expect(page.locator("select[name=kind]")).to_have_value("no_face")
    page.select_option("select[name=kind]", "person_changed")  # no session has one
    page.click("form.filters button[type=submit]")
    page.click("a[data-status='to_review']")
    expect(page.locator("td.empty")).to_have_text("Nothing here.")


def test_a_reviewer_gets_back_to_the_session_they_claimed(new_page: Callable[..., Page], world: World) -> None:
    page = new_page()
    sign_in(page, world, "reviewer_a")
    session_id = claim_from_queue(page, world)
    expect(page.locator("#claim-until")).to_be_visible()
    page.click("header nav a:has-text('Queue')")
    expect(page.locator(f"tr[data-session='{session_id}']")).to_have_count(0)  # no longer to review
    page.click("a[data-status='in_review']")
    expect(page.locator(f"tr[data-session='{session_id}'] .claim-left")).to_have_text("(your claim: 30 min left)")
    page.click(f"tr[data-session='{session_id}'] a.continue")
    expect(page).to_have_url(f"{world.url}/review/sessions/{session_id}")
    expect(page.locator(".flag-row button.confirm")).to_have_count(len(FLAGS))


def test_a_note_closed_with_esc_is_saved_or_said_to_be_unsaved(new_page: Callable[..., Page], world: World) -> None:
    page = new_page()
    sign_in(page, world, "reviewer_a")
    claim_from_queue(page, world)
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.locator(".flag-row[data-index='0'] .decision")).to_have_text("dismissed")
    page.keyboard.press("k")  # back from the next flag, to add a note to the one just dismissed
    page.keyboard.press("n")
    page.keyboard.type("the cat on the chair")
    page.keyboard.press("Escape")
    expect(page.locator("#announce")).to_have_text("flag 1 dismissed")
    page.keyboard.press("j")
    page.keyboard.press("n")
    page.keyboard.type("glances at a second screen")
    page.keyboard.press("Escape")
    expect(page.locator(".flag-row[data-index='1'] .decision")).to_contain_text("note not saved yet")
    page.reload()
    expect(page.locator(".flag-row[data-index='0'] .note")).to_have_value("the cat on the chair")


def test_decisions_show_on_the_timeline_and_an_expired_claim_can_be_taken_again(
    new_page: Callable[..., Page], world: World
) -> None:
    page = new_page()
    sign_in(page, world, "reviewer_a")
    session_id = claim_from_queue(page, world)
    undecided = page.locator("#timeline .flag[data-index='1']")
    expect(undecided).to_have_attribute("aria-label", "multiple faces 11.2 to 13.2 s, undecided")
    page.keyboard.press("j")
    page.keyboard.press("c")
    confirmed = page.locator("#timeline .flag[data-index='0']")
    expect(confirmed).to_have_attribute("aria-label", "no face 4.8 to 6.8 s, confirmed")
    look = "(el) => getComputedStyle(el).boxShadow"
    assert confirmed.evaluate(look) != undecided.evaluate(look)  # a confirmed flag looks confirmed
    paste = page.locator(".event-list li", has_text="paste").locator("button")
    paste.click()  # the exam events are listed, and each takes the video to its moment
    at = float(paste.get_attribute("data-seek") or "nan")
    page.wait_for_function(f"() => Math.abs(document.getElementById('webcam').currentTime - {at}) < 0.3")
    expect(page.locator("#timeline button.event")).to_have_count(page.locator(".event-list li").count())

    with world.context.db() as db:  # the 30 minutes run out while the reviewer is away
        session = db.get(ExamSession, session_id)
        assert session is not None
        session.claim_expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
    page.keyboard.press("c")  # on the second flag, where confirming the first took the reviewer
    expect(page.locator(".flag-row[data-index='1'] .decision")).to_contain_text("not saved: claim this session first")
    expect(page.locator(".flag-row[data-index='1']")).to_have_class(re.compile(r"\bcurrent\b"))  # back to it
    page.click(".flag-row[data-index='1'] button.reclaim")
    expect(page.locator("#announce")).to_have_text("claimed again; you can decide")
    page.keyboard.press("c")
    expect(page.locator(".flag-row[data-index='1'] .decision")).to_have_text("confirmed")
    page.focus(".flag-row[data-index='2'] button.dismiss")
    page.keyboard.press(" ")  # space presses the focused button, not play
    expect(page.locator(".flag-row[data-index='2'] .decision")).to_have_text("dismissed")
    expect(page.locator("#timeline .flag[data-index='2']")).to_have_class(re.compile(r"\bdismissed\b"))


def test_the_first_reviewer_of_a_rules_violation_cannot_lock_it_and_locked_flags_offer_no_decisions(
    new_page: Callable[..., Page], world: World
) -> None:
    first = new_page()
    sign_in(first, world, "reviewer_a")
    session_id = claim_from_queue(first, world)
    first.check("input[name=outcome][value='Rules Violation']")
    first.click("form.outcome button[type=submit]:not([name])")  # no note: the error shows in the form
    expect(first.locator("form.outcome [role=alert]")).to_contain_text("a note is required for Rules Violation")
    expect(first).to_have_url(f"{world.url}/review/sessions/{session_id}")
    first.fill("form.outcome textarea[name=note]", "a second person from 11 s")
    first.click("form.outcome button[type=submit]:not([name])")
    expect(first).to_have_url(f"{world.url}/review/queue")
    first.click("a[data-status='awaiting_second']")
    row = first.locator(f"tr[data-session='{session_id}']")
    expect(row).to_contain_text("another reviewer must confirm it")
    expect(row.locator("button")).to_have_count(0)

    second = new_page()
    sign_in(second, world, "reviewer_a2")
    second.click("a[data-status='awaiting_second']")
    second.click(f"tr[data-session='{session_id}'] button.claim")
    expect(second.locator("form.second")).to_be_visible()
    second.wait_for_load_state("load")  # so the key below reaches review.js's listener and is refused there
    expect(second.locator(".flag-row button.confirm, .flag-row button.dismiss, .flag-row input.note")).to_have_count(0)
    second.keyboard.press("j")
    second.keyboard.press("x")  # flags are locked: the key does nothing
    expect(second.locator(".flag-row[data-index='0'] .decision")).to_have_text("undecided")
    second.click("form.second button[value=return]")  # returning needs a reason: said in the form
    expect(second.locator("form.second [role=alert]")).to_contain_text("say why")
    second.click("button:has-text('Release without deciding')")
    expect(second).to_have_url(f"{world.url}/review/queue")


def test_the_keys_panel_leaves_the_video_timeline_and_forms_uncovered(
    new_page: Callable[..., Page], world: World
) -> None:
    page = new_page({"width": 1366, "height": 768})
    missing: list[str] = []
    page.on("response", lambda response: missing.append(response.url) if response.status == 404 else None)
    sign_in(page, world, "reviewer_a")
    claim_from_queue(page, world)
    keys = page.locator("aside.shortcuts").bounding_box()
    assert keys is not None
    for target in ("#webcam", "#timeline", "form.outcome button[type=submit]:not([name])"):
        box = page.locator(target).bounding_box()
        assert box is not None
        overlap_x = min(box["x"] + box["width"], keys["x"] + keys["width"]) - max(box["x"], keys["x"])
        overlap_y = min(box["y"] + box["height"], keys["y"] + keys["height"]) - max(box["y"], keys["y"])
        assert overlap_x <= 0 or overlap_y <= 0, f"the keys panel covers {target}"
    assert missing == []
    assert page.request.get(f"{world.url}/favicon.ico").ok  # what browsers ask every site for


def test_officers_read_sign_ins_in_the_audit_trail_and_its_csv_details_are_json(
    new_page: Callable[..., Page], world: World
) -> None:
    reviewer = new_page()
    sign_in(reviewer, world, "reviewer_a")
    claim_from_queue(reviewer, world)
    officer = new_page()
    sign_in(officer, world, "officer_a")
    officer.click("header nav a:has-text('Audit trail')")
    expect(
        officer.locator("table.audit tr", has_text=f"user:{world.users['reviewer_a']}").filter(has_text="login")
    ).not_to_have_count(0)
    expect(officer.locator("table.audit")).not_to_contain_text(world.users["reviewer_b"])  # another tenant's
    with officer.expect_download() as download:
        officer.click("a:has-text('Export CSV')")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows and all(isinstance(json.loads(row["detail"]), dict) for row in rows)
    assert {"login", "claim", "view_session"} <= {row["action"] for row in rows}


# -- accessibility: axe-core (4.12.1, from axe-playwright-python) on every page and state, WCAG 2.1 AA ---------
AXE = Axe()


def assert_accessible(page: Page, state: str) -> None:
    """No axe-core violation of WCAG 2.0/2.1 A and AA or of its best practices, of any impact (the target is none
    critical or serious), on the page as it is now."""
    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}}
    violations = AXE.run(page, options=options).response["violations"]
    found = [f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:4]}" for v in violations]
    assert not found, f"{state}: " + "; ".join(found)


def test_every_page_and_state_passes_axe(new_page: Callable[..., Page], world: World) -> None:
    page = new_page()
    page.goto(f"{world.url}/review/queue")
    assert_accessible(page, "signed out")
    page.fill("input[name=username]", world.users["reviewer_a"])
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert_accessible(page, "a failed sign-in")
    sign_in(page, world, "reviewer_a")
    assert_accessible(page, "the queue, with a session")
    page.click("a[data-status='reviewed']")
    assert_accessible(page, "the queue, empty")
    page.click("a[data-status='to_review']")
    session_id = claim_from_queue(page, world)
    page.keyboard.press("j")
    page.keyboard.press("c")
    expect(page.locator(".flag-row[data-index='0'] .decision")).to_have_text("confirmed")
    page.keyboard.press("x")
    expect(page.locator(".flag-row[data-index='1'] .decision")).to_have_text("dismissed")
    page.click("details.add-flag summary")
    page.click("details.bulk summary")
    page.check("input[name=outcome][value='Suspicious']")
    page.click("form.outcome button[type=submit]:not([name])")
    expect(page.locator("form.outcome [role=alert]")).to_be_visible()
    expect(page.locator(".flag-row[data-index='0'] .why-text")).to_contain_text(
        "9 of 10 sampled frames showed no face (1 could not tell"
    )
    assert_accessible(page, "a claimed session, decided flags, an open form, a form error")

    other = new_page()
    sign_in(other, world, "reviewer_a2")
    other.click("a[data-status='in_review']")
    other.click(f"tr[data-session='{session_id}'] a:has-text('view')")
    assert_accessible(other, "a session another reviewer holds (read-only)")

    page.fill("form.outcome textarea[name=note]", "glances away, nothing more")
    page.click("form.outcome button[type=submit]:not([name])")
    expect(page).to_have_url(f"{world.url}/review/queue")
    page.click("a[data-status='reviewed']")
    page.click(f"tr[data-session='{session_id}'] a:has-text('open')")
    assert_accessible(page, "a final session")

    officer = new_page()
    sign_in(officer, world, "officer_a")
    officer.click("header nav a:has-text('Reports')")
    assert_accessible(officer, "the reports")
    officer.click("tr[data-exam] a:has-text('Report')")
    assert_accessible(officer, "an exam report")
    officer.click("header nav a:has-text('Audit trail')")
    assert_accessible(officer, "the audit trail")


def test_a_twelve_flag_session_reviewed_with_the_keyboard_alone(
    new_page: Callable[..., Page], world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer's cost, measured: keystrokes and wall time for 12 flags and the outcome, keys only."""
    session_id = world.sessions["a"]
    with world.context.db() as db:  # nine more flags, 12 in all, spread over the 24 s recording
        for i in range(9):
            start_ms = 1000 + i * 2500
            db.add(
                FlagSegment(
                    session_id=session_id, kind="looking_away", start_ms=start_ms, end_ms=start_ms + 1200,
                    score=0.7, peak_ms=start_ms + 600, evidence_keys=[], detector_versions={}, pipeline_version="1",
                )
            )  # fmt: skip
        db.commit()
    page = new_page()
    sign_in(page, world, "reviewer_a")
    claim_from_queue(page, world)
    expect(page.locator(".flag-row")).to_have_count(12)
    decisions = ["c" if i % 4 == 0 else "x" for i in range(12)]
    keys = ["j", *decisions, "o", " ", "Enter"]  # first flag; decide each (on to the next); outcome Clean; submit
    started = time.monotonic()
    for key in keys:
        page.keyboard.press(key)
    expect(page).to_have_url(f"{world.url}/review/queue")
    elapsed = time.monotonic() - started
    with world.context.db() as db:
        stored = db.scalars(select(FlagDecision.decision).where(FlagDecision.session_id == session_id)).all()
        review = db.get(SessionReview, session_id)
    assert sorted(stored) == sorted("confirmed" if k == "c" else "dismissed" for k in decisions)
    assert review is not None and review.outcome == "Clean"
    with capsys.disabled():
        print(f"\nkeyboard review: 12 flags and the outcome in {len(keys)} keystrokes, {elapsed:.1f} s")


def test_undo_the_enlarged_evidence_the_time_axis_and_submit_and_next(
    new_page: Callable[..., Page], world: World, sample: SampleSession
) -> None:
    later = add_processed_session(world, "a", sample, exam="exam-a-retake")
    page = new_page()
    sign_in(page, world, "reviewer_a")
    first_id = page.locator("tr[data-session]").first.get_attribute("data-session")
    assert first_id is not None
    page.click(f"tr[data-session='{first_id}'] button.claim")
    expect(page).to_have_url(f"{world.url}/review/sessions/{first_id}")
    page.wait_for_load_state("load")  # review.js sets its keys up by then (see claim_from_queue)

    page.keyboard.press("j")
    page.keyboard.press("c")
    expect(page.locator(".flag-row[data-index='0'] .decision")).to_have_text("confirmed")
    page.keyboard.press("u")  # take it back
    expect(page.locator(".flag-row[data-index='0'] .decision")).to_have_text("undecided")
    expect(page.locator(".flag-row[data-index='0']")).to_have_class(re.compile(r"\bcurrent\b"))
    with world.context.db() as db:
        assert db.scalars(select(FlagDecision).where(FlagDecision.session_id == first_id)).all() == []

    page.click(".flag-row[data-index='0'] .evidence-open")
    expect(page.locator("#enlarged img")).to_be_visible()
    assert_accessible(page, "an enlarged evidence frame")
    page.keyboard.press("Escape")
    expect(page.locator("#enlarged")).to_be_hidden()

    thumbs = page.locator("#thumbs .thumb")
    expect(thumbs).to_have_count(5)  # 24 s in slots of 5 s
    page.wait_for_function("() => document.getElementById('thumbs').offsetHeight > 0")
    sprite = page.request.get(f"{world.url}/review/sessions/{first_id}/thumbnails")  # with the page's sign-in
    assert sprite.ok and sprite.body()[:2] == b"\xff\xd8"
    thumbs.nth(3).click()  # a tile takes the video to its moment
    page.wait_for_function("() => Math.abs(document.getElementById('webcam').currentTime - 15) < 0.3")
    expect(page.locator(".axis span").first).to_have_text("0:00")
    box = page.locator("#timeline").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 2)  # hovering previews that moment
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#preview .preview-time")).to_have_text(re.compile(r"0:1[12]"))
    page.mouse.click(box["x"] + 0.9 * box["width"], box["y"] + 2)  # above the flags, 90% in
    page.wait_for_function(f"() => Math.abs(document.getElementById('webcam').currentTime - {0.9 * SAMPLE_S}) < 0.5")

    page.keyboard.press("+")
    page.keyboard.press("+")  # zoomed 4x: the timeline scrolls in its frame
    expect(page.locator("#zoom-level")).to_have_text("4\u00d7")
    widths = page.evaluate(
        "[document.getElementById('timeline-zoom').offsetWidth, document.getElementById('timeline-scroll').clientWidth]"
    )
    assert abs(widths[0] / widths[1] - 4) < 0.05
    page.click("#zoom-out")
    page.keyboard.press("-")
    expect(page.locator("#zoom-level")).to_have_text("1\u00d7")

    page.keyboard.press("k")  # the first flag, 4.8-6.8 s: looped from 2.8 s to 7.8 s
    page.keyboard.press("l")
    expect(page.locator("#loop")).to_be_checked()
    page.focus("#rate")
    page.select_option("#rate", "4")
    page.keyboard.press(" ")
    page.wait_for_function("() => document.getElementById('webcam').currentTime > 4")
    page.evaluate(
        "window.looped = false; document.getElementById('webcam').addEventListener('seeked', "
        "() => { if (document.getElementById('webcam').currentTime < 3.5) window.looped = true; })"
    )
    page.wait_for_function("() => window.looped === true")  # back to the lead-in, not on to the end
    page.keyboard.press(" ")

    page.check("input[name=outcome][value='Clean']")
    page.click("button:has-text('Submit and review the next')")
    following = later if first_id != later else world.sessions["a"]
    expect(page).to_have_url(f"{world.url}/review/sessions/{following}")
    expect(page.locator("#claim-until")).to_be_visible()  # claimed already


def test_flags_are_decided_in_bulk_by_kind(new_page: Callable[..., Page], world: World) -> None:
    page = new_page()
    sign_in(page, world, "reviewer_a")
    claim_from_queue(page, world)
    page.keyboard.press("j")
    page.keyboard.press("c")  # a decision already made stays as it is
    expect(page.locator(".flag-row[data-index='0'] .decision")).to_have_text("confirmed")
    page.click("details.bulk summary")
    page.select_option("details.bulk select[name=kind]", "looking_away")
    page.click("details.bulk button[type=submit]")
    expect(page.locator(".flag-row[data-index='2'] .decision")).to_have_text("dismissed")
    expect(page.locator(".flag-row[data-index='1'] .decision")).to_have_text("undecided")
    expect(page.locator(".flag-row[data-index='0'] .decision")).to_have_text("confirmed")


def test_officers_set_the_note_reasons_that_reviewers_add_with_one_click(
    new_page: Callable[..., Page], world: World
) -> None:
    officer = new_page()
    sign_in(officer, world, "officer_a")
    officer.click("header nav a:has-text('Note reasons')")
    forms = officer.locator("form.note-reasons")
    expect(forms).to_have_count(1)  # only the officer's own platform
    expect(forms.locator("textarea")).to_contain_text("phone in view")  # the defaults until someone sets them
    assert_accessible(officer, "the note reasons")
    forms.locator("textarea").fill("\n".join(f"reason {i}" for i in range(10)))
    forms.locator("button[type=submit]").click()
    expect(forms.locator("[role=alert]")).to_contain_text("at most 9 reasons")
    forms.locator("textarea").fill("phone in view\nsecond person beside the candidate\n")
    forms.locator("button[type=submit]").click()
    expect(officer.locator("form.note-reasons textarea")).to_have_value(
        "phone in view\nsecond person beside the candidate"
    )

    page = new_page()
    sign_in(page, world, "reviewer_a")
    claim_from_queue(page, world)
    expect(page.locator(".reasons button")).to_have_count(2)
    page.keyboard.press("j")
    page.keyboard.press("x")  # dismiss the first flag; on to the second
    page.keyboard.press("k")
    page.keyboard.press("2")  # its note, saved with its decision
    expect(page.locator(".flag-row[data-index='0'] .note")).to_have_value("second person beside the candidate")
    expect(page.locator("#announce")).to_have_text("flag 1 dismissed")
    page.keyboard.press("j")
    page.click(".reasons button:has-text('phone in view')")  # on an undecided flag: said to be unsaved
    expect(page.locator(".flag-row[data-index='1'] .decision")).to_contain_text("note not saved yet")
    page.reload()
    expect(page.locator(".flag-row[data-index='0'] .note")).to_have_value("second person beside the candidate")


def test_paging_keeps_the_filter_and_the_add_flag_form_answers_inline(
    new_page: Callable[..., Page], world: World
) -> None:
    today = utcnow()
    with world.context.db() as db:  # 55 more processed sessions of platform a: two pages of 50
        exam_id = db.scalars(select(ExamSession.exam_id).where(ExamSession.id == world.sessions["a"])).one()
        for i in range(55):
            db.add(
                ExamSession(
                    tenant_id=world.tenant_ids["a"], exam_id=exam_id, candidate_id=f"paged-{i}", attempt_id=str(i),
                    started_at=today, state="processed", duration_s=24.0, risk_score=0.5, review_priority="medium",
                    processed_at=today,
                )
            )  # fmt: skip
        db.commit()
    try:
        paging_and_inline_errors(new_page(), world, today)
    finally:  # the PostgreSQL database is shared by the run: leave other tests' queues as they were
        with world.context.db() as db:
            db.execute(
                delete(ExamSession).where(
                    ExamSession.tenant_id == world.tenant_ids["a"], ExamSession.candidate_id.like("paged-%")
                )
            )
            db.commit()


def paging_and_inline_errors(page: Page, world: World, today: datetime) -> None:
    sign_in(page, world, "reviewer_a")
    page.fill("input[name=since]", today.date().isoformat())
    page.click("form.filters button[type=submit]")
    expect(page.locator("p.pages")).to_contain_text("Page 1 of 2")
    page.click("p.pages a[rel=next]")
    expect(page.locator("p.pages")).to_contain_text("Page 2 of 2")
    expect(page.locator("input[name=since]")).to_have_value(today.date().isoformat())  # the filter came along
    expect(page.locator("tr[data-session]")).to_have_count(6)
    page.click("p.pages a[rel=prev]")
    expect(page.locator("tr[data-session]")).to_have_count(50)

    page.fill("input[name=since]", "")
    page.click("form.filters button[type=submit]")
    page.click(f"tr[data-session='{world.sessions['a']}'] button.claim")
    page.click("details.add-flag summary")
    page.fill("details.add-flag input[name=start_s]", "20")
    page.fill("details.add-flag input[name=end_s]", "500")  # past the end of the 24 s recording
    page.click("details.add-flag button[type=submit]")
    expect(page.locator("details.add-flag [role=alert]")).to_be_visible()
    expect(page).to_have_url(f"{world.url}/review/sessions/{world.sessions['a']}")


def test_an_officer_reopens_a_final_review_and_the_platform_receives_version_2(
    new_page: Callable[..., Page], world: World, webhook_receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    """An appeal: the officer reopens a Clean session with the reason, a reviewer decides it again (filing the
    phone they saw as a phone), and the platform is sent version 2."""
    hook_url, received = webhook_receiver
    secret = new_secret()
    set_webhook(world.context, world.tenant_ids["a"], hook_url, secret)
    sender = WebhookSender(world.context.db, webhook_policy(world.context, max_attempts=3, backoff_s=0.5))
    sending = threading.Thread(target=sender.run, kwargs={"poll_s": 0.2}, daemon=True)
    sending.start()
    session_id = world.sessions["a"]
    try:
        reviewer = new_page()
        sign_in(reviewer, world, "reviewer_a")
        claim_from_queue(reviewer, world)
        reviewer.check("input[name=outcome][value='Clean']")
        reviewer.click("form.outcome button[type=submit]:not([name])")
        expect(reviewer).to_have_url(f"{world.url}/review/queue")

        officer = new_page()
        sign_in(officer, world, "officer_a")
        officer.click("a[data-status='reviewed']")
        officer.click(f"tr[data-session='{session_id}'] a:has-text('open')")
        expect(officer.locator("#outcome-history li[data-version='1']")).to_contain_text("Clean")
        assert_accessible(officer, "a final session, to an officer")
        reason = "the proctor on duty reports a phone at 8 s"
        officer.fill("form.reopen textarea[name=reason]", reason)
        officer.click("form.reopen button:has-text('Reopen for appeal')")
        expect(officer.locator("#under-appeal")).to_contain_text(reason)
        expect(officer.locator("#outcome-history li[data-version='1'] .reopen-reason")).to_have_text(reason)
        expect(officer.locator("#state")).to_have_text("in_review")
        assert_accessible(officer, "a session under appeal")
        shot(officer, "10-under-appeal")

        second = new_page()
        sign_in(second, world, "reviewer_a2")
        claim_from_queue(second, world)  # back in the queue to review
        expect(second.locator("#under-appeal")).to_contain_text(reason)
        second.click("details.add-flag summary")
        second.select_option("details.add-flag select[name=kind]", "phone")
        second.fill("details.add-flag input[name=start_s]", "8")
        second.fill("details.add-flag input[name=end_s]", "10")
        second.fill("details.add-flag input[name=note]", "a phone in the left hand")
        second.click("details.add-flag button[type=submit]")
        expect(second.locator(".flag-row .kind.phone")).to_have_text("phone")
        second.check("input[name=outcome][value='Suspicious']")
        second.fill("form.outcome textarea[name=note]", "a phone in view for 2 s")
        second.click("form.outcome button[type=submit]:not([name])")
        expect(second).to_have_url(f"{world.url}/review/queue")
        officer.reload()
        expect(officer.locator("#outcome-history li")).to_have_count(2)
        expect(officer.locator("#outcome-history li[data-version='2']")).to_contain_text("Suspicious")
        shot(officer, "11-appeal-decided")

        deadline = time.monotonic() + 15
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        sent = {(p["event"], p["review"]["version"]): (h, b) for h, b in received for p in [json.loads(b)]}
        assert set(sent) == {("review.final", 1), ("review.reopened", 1), ("review.final", 2)}
        headers, body = sent[("review.final", 2)]
        assert verify(secret, headers, body, utcnow())
        pushed = json.loads(body)["review"]
        assert pushed["outcome"] == "Suspicious" and not pushed["under_appeal"]
        assert [(h["version"], h["outcome"], h["reopen_reason"]) for h in pushed["history"]] == [
            (1, "Clean", reason),
            (2, "Suspicious", None),
        ]
        assert ("phone", "reviewer", "confirmed") in {(f["kind"], f["source"], f["decision"]) for f in pushed["flags"]}
        with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['a']}"}) as platform:
            review = platform.get(f"/v1/sessions/{session_id}/review").json()
        assert (review["version"], review["outcome"], review["final"]) == (2, "Suspicious", True)
    finally:
        sender.stop.set()
        sending.join(timeout=5)
