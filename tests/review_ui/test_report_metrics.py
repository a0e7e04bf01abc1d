"""The exam report's metrics against a hand-built exam whose every figure is worked out below, then the same figures
through the live review UI: the charts on the page, one CSV per metric, the date range, the scope and the audit.

The exam (times UTC, March 2025; each review goes through `review_ui.decisions` at the stated time):

    S1  started 10th 09:00, 0.5 h video, uploaded 10th 10:00. Flags: no_face x2, multiple_faces, looking_away; r1
        confirms a no_face and the multiple_faces, dismisses the other no_face, adds a phone; Rules Violation 10th
        11:00, which r2 returns at 12:00; r1 decides it again on the 11th at 09:00, r2 confirms at 10:00 (final).
    S2  started 10th 14:00, 1 h, uploaded 15:00. no_face (r2 dismisses), camera_blocked (r2 confirms); Clean at
        15:30 (final). An officer reopens it on the 13th at 09:00; r1 decides Clean again at 10:00 (version 2).
    S3  started 12th 08:00, 1.5 h, uploaded 09:00. looking_away x2 (r1 confirms one, dismisses one); Suspicious
        at 14:00 (final).
    S4  started 12th 10:00, 1 h, uploaded 10:30. multiple_faces (r1 confirms); Rules Violation at 11:00, awaiting
        its second review.
    S5  started 14th 09:00, 1 h, uploaded 10:00. no_face, undecided; not reviewed.
    S6  started 12th 09:00, 1 h, erased, with three no_face flags: counted nowhere.
    Another tenant's exam has a session started on the 10th with two no_face flags that r1 decides Clean on the
    10th: counted nowhere either.

All dates: 5 sessions, 5 h of video. Detector flags no_face 4, multiple_faces 2, looking_away 3, camera_blocked 1
(per hour: 0.8, 0.4, 0.6, 0.2), one phone added (0.2). Confirm rates: no_face 1 of 3, multiple_faces 2 of 2,
looking_away 1 of 2, camera_blocked 1 of 1. Second reviews: 1 confirmed, 1 returned. Upload to first final outcome:
S1 24 h, S2 0.5 h (its appeal does not count), S3 5 h: median 5 h, 90th percentile 24 h. Throughput: r1 a final
outcome on the 11th (S1), 12th (S3) and 13th (S2's appeal); r2 a final outcome (S2) and a second review on the
10th, a second review on the 11th.

The 12th alone: S3 and S4, 2.5 h of video.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from core.context import AppContext
from core.states import SessionState
from core.tables import AuditEvent, Exam, ExamSession, FlagSegment, StateChange
from core.tenants import add_tenant
from core.vocabulary import Decision, Outcome, ReviewerFlagKind, Role
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from review_ui.accounts import Scope, add_user, assign, scope_of
from review_ui.decisions import Actor, add_flag, claim, decide_flag, reopen, second_review, set_outcome
from review_ui.report_metrics import (
    BucketCount,
    ConfirmRate,
    FlagRate,
    OutcomeCount,
    SecondReviews,
    TurnaroundLine,
    bucket_of,
    exam_metrics,
    exam_window,
    turnaround,
)
from review_ui.reports import DateRange
from review_ui.svg_charts import Bar, StackedRow, bar_chart, column_chart, stacked_bar_chart
from tests.review_ui.conftest import PASSWORD, Browser

SVG = "{http://www.w3.org/2000/svg}"
CLAIM = timedelta(hours=1)
DAY_12 = DateRange(date(2025, 3, 12), date(2025, 3, 12))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


@dataclass
class HandBuilt:
    context: AppContext
    tenant_id: str
    exam_id: str
    other_exam_id: str
    sessions: dict[str, str]
    users: dict[str, str]
    """label (r1, r2, officer, officer_b, reviewer) -> username"""
    scope: Scope
    """The officer's: the exam's tenant."""
    other_scope: Scope
    """Another tenant's officer's."""


@pytest.fixture
def hand(context: AppContext) -> HandBuilt:
    suffix = uuid.uuid4().hex[:8]
    with context.db() as db:
        tenant, other = add_tenant(db, f"rm-{suffix}", "metrics"), add_tenant(db, f"rm-other-{suffix}", "other")
        exam, other_exam = Exam(tenant_id=tenant.id, external_id="final"), Exam(tenant_id=other.id, external_id="x")
        db.add_all([exam, other_exam])
        users = {label: add_user(db, f"{label}-{suffix}", PASSWORD, role) for label, role in (
            ("r1", Role.REVIEWER), ("r2", Role.REVIEWER), ("officer", Role.OFFICER), ("officer_b", Role.OFFICER),
            ("reviewer", Role.REVIEWER),
        )}  # fmt: skip
        for label, slug in (("officer", tenant.slug), ("officer_b", other.slug), ("reviewer", tenant.slug)):
            assign(db, users[label], slug)
        db.flush()
        flags: dict[str, list[str]] = {}

        def session(label: str, started: datetime, hours: float, uploaded: datetime, kinds: list[str]) -> ExamSession:
            on = other_exam if label == "Y1" else exam
            s = ExamSession(
                tenant_id=on.tenant_id, exam_id=on.id, candidate_id=f"cand-{label}", attempt_id=label,
                started_at=started, duration_s=hours * 3600, state=SessionState.PROCESSED.value, pipeline_version="1",
            )  # fmt: skip
            db.add(s)
            db.flush()
            db.add(StateChange(session_id=s.id, from_state="uploading", to_state="uploaded", at=uploaded))
            segments = [
                FlagSegment(session_id=s.id, kind=kind, start_ms=i * 60_000, end_ms=i * 60_000 + 5000, score=0.9,
                            peak_ms=i * 60_000 + 1000, evidence_keys=[], detector_versions={}, pipeline_version="1")
                for i, kind in enumerate(kinds)
            ]  # fmt: skip
            db.add_all(segments)
            db.flush()
            flags[label] = [segment.id for segment in segments]
            return s

        no_face, two, away, blocked = "no_face", "multiple_faces", "looking_away", "camera_blocked"
        s1 = session("S1", at(10, 9), 0.5, at(10, 10), [no_face, no_face, two, away])
        s2 = session("S2", at(10, 14), 1, at(10, 15), [no_face, blocked])
        s3 = session("S3", at(12, 8), 1.5, at(12, 9), [away, away])
        s4 = session("S4", at(12, 10), 1, at(12, 10, 30), [two])
        s5 = session("S5", at(14, 9), 1, at(14, 10), [no_face])
        s6 = session("S6", at(12, 9), 1, at(12, 10), [no_face] * 3)
        s6.state = SessionState.DELETED.value
        y1 = session("Y1", at(10, 9), 1, at(10, 9, 30), [no_face, no_face])
        r1, r2, officer = (Actor(users[label], None) for label in ("r1", "r2", "officer"))
        confirmed, dismissed = Decision.CONFIRMED, Decision.DISMISSED

        claim(db, s1, r1, at(10, 10, 50), CLAIM)
        for flag, decision in zip(flags["S1"][:3], (confirmed, dismissed, confirmed), strict=True):
            decide_flag(db, s1, flag, decision, "", r1, at(10, 10, 55))
        add_flag(db, s1, ReviewerFlagKind.PHONE, 100, 110, "a phone", r1, at(10, 10, 56))
        set_outcome(db, s1, Outcome.RULES_VIOLATION, "a phone", r1, at(10, 11))
        db.commit()  # each step is a request of its own
        claim(db, s1, r2, at(10, 11, 55), CLAIM)
        assert second_review(db, s1, False, "not clear enough", r2, at(10, 12)) == "returned"
        db.commit()
        claim(db, s1, r1, at(11, 8, 55), CLAIM)
        set_outcome(db, s1, Outcome.RULES_VIOLATION, "a phone, clearly", r1, at(11, 9))
        db.commit()
        claim(db, s1, r2, at(11, 9, 55), CLAIM)
        second_review(db, s1, True, "agreed", r2, at(11, 10))
        db.commit()

        claim(db, s2, r2, at(10, 15, 20), CLAIM)
        decide_flag(db, s2, flags["S2"][0], dismissed, "", r2, at(10, 15, 25))
        decide_flag(db, s2, flags["S2"][1], confirmed, "", r2, at(10, 15, 25))
        set_outcome(db, s2, Outcome.CLEAN, "", r2, at(10, 15, 30))
        db.commit()
        reopen(db, s2, "the candidate appealed", officer, at(13, 9))
        db.commit()
        claim(db, s2, r1, at(13, 9, 55), CLAIM)
        set_outcome(db, s2, Outcome.CLEAN, "", r1, at(13, 10))
        db.commit()

        claim(db, s3, r1, at(12, 13, 50), CLAIM)
        decide_flag(db, s3, flags["S3"][0], confirmed, "", r1, at(12, 13, 55))
        decide_flag(db, s3, flags["S3"][1], dismissed, "", r1, at(12, 13, 55))
        set_outcome(db, s3, Outcome.SUSPICIOUS, "looked at notes", r1, at(12, 14))
        db.commit()

        claim(db, s4, r1, at(12, 10, 50), CLAIM)
        decide_flag(db, s4, flags["S4"][0], confirmed, "", r1, at(12, 10, 55))
        set_outcome(db, s4, Outcome.RULES_VIOLATION, "a second person", r1, at(12, 11))
        db.commit()

        claim(db, y1, r1, at(10, 9, 50), CLAIM)
        set_outcome(db, y1, Outcome.CLEAN, "", r1, at(10, 10))
        db.commit()
        return HandBuilt(
            context=context,
            tenant_id=tenant.id,
            exam_id=exam.id,
            other_exam_id=other_exam.id,
            sessions={"S1": s1.id, "S2": s2.id, "S3": s3.id, "S4": s4.id, "S5": s5.id, "S6": s6.id, "Y1": y1.id},
            users={label: user.username for label, user in users.items()},
            scope=scope_of(db, users["officer"]),
            other_scope=scope_of(db, users["officer_b"]),
        )


def test_every_metric_over_all_dates_matches_the_hand_built_exam(hand: HandBuilt) -> None:
    with hand.context.db() as db:
        window = exam_window(db, hand.scope, hand.exam_id, DateRange())
        assert window is not None
        m = exam_metrics(db, window)
    assert (m.sessions, m.video_s) == (5, 5 * 3600)
    assert m.outcomes == (
        OutcomeCount("Clean", 1), OutcomeCount("Suspicious", 1), OutcomeCount("Rules Violation", 1),
        OutcomeCount("Not Reviewed", 0), OutcomeCount("awaiting second review", 1), OutcomeCount("not yet reviewed", 1),
    )  # fmt: skip
    assert m.flag_rates == (
        FlagRate("no_face", "detector", 4, 0.8), FlagRate("multiple_faces", "detector", 2, 0.4),
        FlagRate("looking_away", "detector", 3, 0.6), FlagRate("camera_blocked", "detector", 1, 0.2),
        FlagRate("person_changed", "detector", 0, 0.0), FlagRate("identity_mismatch", "detector", 0, 0.0),
        FlagRate("phone", "reviewer", 1, 0.2),
    )  # fmt: skip
    assert m.confirm_rates == (
        ConfirmRate("no_face", 1, 2), ConfirmRate("multiple_faces", 2, 0), ConfirmRate("looking_away", 1, 1),
        ConfirmRate("camera_blocked", 1, 0), ConfirmRate("person_changed", 0, 0),
        ConfirmRate("identity_mismatch", 0, 0),
    )  # fmt: skip
    assert [r.rate for r in m.confirm_rates] == [1 / 3, 1.0, 0.5, 1.0, None, None]
    assert m.second_reviews == SecondReviews(confirmed=1, returned=1) and m.second_reviews.agreement == 0.5
    t = m.turnaround
    assert [(line.session_id, line.seconds) for line in t.lines] == [
        (hand.sessions["S1"], 24 * 3600.0), (hand.sessions["S2"], 1800.0), (hand.sessions["S3"], 5 * 3600.0),
    ]  # fmt: skip
    assert (t.median_s, t.p90_s, t.max_s) == (5 * 3600, 24 * 3600, 24 * 3600)
    assert t.buckets == (
        BucketCount("< 1 h", 1), BucketCount("1-4 h", 0), BucketCount("4-24 h", 1), BucketCount("1-3 d", 1),
        BucketCount("> 3 d", 0),
    )  # fmt: skip
    r1, r2 = hand.users["r1"], hand.users["r2"]
    assert [(r.username, r.final_outcomes, r.second_reviews) for r in m.throughput] == [(r1, 3, 0), (r2, 1, 2)]
    assert [(d.day.day, d.final_outcomes, d.second_reviews) for d in m.throughput[0].days] == [
        (11, 1, 0),
        (12, 1, 0),
        (13, 1, 0),
    ]
    assert [(d.day.day, d.final_outcomes, d.second_reviews) for d in m.throughput[1].days] == [(10, 1, 1), (11, 0, 1)]


def test_a_date_range_counts_only_the_sessions_started_within_it(hand: HandBuilt) -> None:
    with hand.context.db() as db:
        window = exam_window(db, hand.scope, hand.exam_id, DAY_12)
        assert window is not None
        m = exam_metrics(db, window)
        up_to_the_10th = exam_window(db, hand.scope, hand.exam_id, DateRange(None, date(2025, 3, 10)))
        assert up_to_the_10th is not None
        earlier = exam_metrics(db, up_to_the_10th)
    assert (m.sessions, m.video_s) == (2, 2.5 * 3600)
    assert {o.outcome: o.sessions for o in m.outcomes if o.sessions} == {"Suspicious": 1, "awaiting second review": 1}
    assert {r.kind: (r.flags, r.per_hour) for r in m.flag_rates if r.flags} == {
        "multiple_faces": (1, 0.4), "looking_away": (2, 0.8)
    }  # fmt: skip
    assert {r.kind: (r.confirmed, r.dismissed) for r in m.confirm_rates if r.decided} == {
        "multiple_faces": (1, 0), "looking_away": (1, 1)
    }  # fmt: skip
    assert m.second_reviews == SecondReviews(0, 0) and m.second_reviews.agreement is None
    assert [line.session_id for line in m.turnaround.lines] == [hand.sessions["S3"]]
    assert [(r.username, r.total) for r in m.throughput] == [(hand.users["r1"], 1)]
    assert {o.outcome: o.sessions for o in earlier.outcomes if o.sessions} == {"Clean": 1, "Rules Violation": 1}
    assert earlier.second_reviews == SecondReviews(1, 1)


def test_the_scope_hides_another_tenants_exam(hand: HandBuilt) -> None:
    with hand.context.db() as db:
        assert exam_window(db, hand.other_scope, hand.exam_id, DateRange()) is None
        assert exam_window(db, hand.scope, hand.other_exam_id, DateRange()) is None
        assert exam_window(db, hand.other_scope, hand.other_exam_id, DateRange()) is not None


@pytest.mark.parametrize(
    ("first", "last", "problem"),
    [
        ("2025-02-30", "", "from date '2025-02-30'"),
        ("", "12/03/2025", "to date"),
        ("2025-03-12", "2025-03-11", "after"),
    ],
)
def test_a_range_that_cannot_be_read_says_how_to_write_it(first: str, last: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        DateRange.parse(first, last)
    assert DateRange.parse("", None) == DateRange()
    assert DateRange.parse("2025-03-12", "2025-03-12").query == "from=2025-03-12&to=2025-03-12"


# -- through the live review UI ---------------------------------------------------------------------------
@pytest.fixture
def officer(hand: HandBuilt) -> Iterator[tuple[str, Browser]]:
    with BackgroundServer(server_app(hand.context)) as url, Browser(url) as browser:
        assert browser.login(hand.users["officer"], PASSWORD).status_code == 303
        yield url, browser


def csv_rows(browser: Browser, path: str) -> list[list[str]]:
    response = browser.get(path)
    assert response.status_code == 200, response.text
    assert (
        response.headers["content-type"].startswith("text/csv")
        and "attachment" in response.headers["content-disposition"]
    )
    return list(csv.reader(io.StringIO(response.text)))


def test_each_metric_exports_its_exact_rows(hand: HandBuilt, officer: tuple[str, Browser]) -> None:
    _, browser = officer
    base = f"/review/reports/{hand.exam_id}/metrics"
    r1, r2, s = hand.users["r1"], hand.users["r2"], hand.sessions
    assert csv_rows(browser, f"{base}/outcomes.csv") == [
        ["outcome", "sessions"], ["Clean", "1"], ["Suspicious", "1"], ["Rules Violation", "1"], ["Not Reviewed", "0"],
        ["awaiting second review", "1"], ["not yet reviewed", "1"],
    ]  # fmt: skip
    assert csv_rows(browser, f"{base}/flags_per_hour.csv") == [
        ["kind", "source", "flags", "video_hours", "flags_per_hour"],
        *[[kind, "detector", n, "5.0", rate] for kind, n, rate in (
            ("no_face", "4", "0.8"), ("multiple_faces", "2", "0.4"), ("looking_away", "3", "0.6"),
            ("camera_blocked", "1", "0.2"), ("person_changed", "0", "0.0"), ("identity_mismatch", "0", "0.0"),
        )],
        ["phone", "reviewer", "1", "5.0", "0.2"],
    ]  # fmt: skip
    assert csv_rows(browser, f"{base}/confirm_rate.csv") == [
        ["kind", "confirmed", "dismissed", "decided", "confirm_rate"],
        ["no_face", "1", "2", "3", "0.3333"], ["multiple_faces", "2", "0", "2", "1.0"],
        ["looking_away", "1", "1", "2", "0.5"], ["camera_blocked", "1", "0", "1", "1.0"],
        ["person_changed", "0", "0", "0", ""], ["identity_mismatch", "0", "0", "0", ""],
    ]  # fmt: skip
    assert csv_rows(browser, f"{base}/second_review.csv") == [
        ["confirmed", "returned", "second_reviews", "agreement"],
        ["1", "1", "2", "0.5"],
    ]
    assert csv_rows(browser, f"{base}/turnaround.csv") == [
        ["session_id", "uploaded_at", "first_final_at", "turnaround_hours", "bucket"],
        [s["S1"], "2025-03-10T10:00:00+00:00", "2025-03-11T10:00:00+00:00", "24.0", "1-3 d"],
        [s["S2"], "2025-03-10T15:00:00+00:00", "2025-03-10T15:30:00+00:00", "0.5", "< 1 h"],
        [s["S3"], "2025-03-12T09:00:00+00:00", "2025-03-12T14:00:00+00:00", "5.0", "4-24 h"],
    ]  # fmt: skip
    assert csv_rows(browser, f"{base}/throughput.csv") == [
        ["reviewer", "day", "final_outcomes", "second_reviews", "total"],
        [r1, "2025-03-11", "1", "0", "1"], [r1, "2025-03-12", "1", "0", "1"], [r1, "2025-03-13", "1", "0", "1"],
        [r2, "2025-03-10", "1", "1", "2"], [r2, "2025-03-11", "0", "1", "1"],
    ]  # fmt: skip
    assert csv_rows(browser, f"{base}/outcomes.csv?from=2025-03-12&to=2025-03-12")[1:4] == [
        ["Clean", "0"],
        ["Suspicious", "1"],
        ["Rules Violation", "0"],
    ]
    with hand.context.db() as db:
        exports = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "view_report", AuditEvent.tenant_id == hand.tenant_id)
            .order_by(AuditEvent.seq)
        ).all()
    assert [(e.detail["metric"], e.detail["from"], e.detail["to"]) for e in exports][-1] == (
        "outcomes", "2025-03-12", "2025-03-12"
    )  # fmt: skip
    assert len(exports) == 7 and all(e.actor == f"user:{hand.users['officer']}" for e in exports)


def test_the_report_page_charts_every_metric_within_its_range(hand: HandBuilt, officer: tuple[str, Browser]) -> None:
    _, browser = officer
    page = browser.page(f"/review/reports/{hand.exam_id}?from=2025-03-12&to=2025-03-12").text
    figures = re.findall(r'<figure class="chart-figure" data-metric="(\w+)">(.*?)</figure>', page, re.S)
    assert [metric for metric, _ in figures] == [
        "outcomes", "flags_per_hour", "confirm_rate", "second_review", "turnaround", "throughput"
    ]  # fmt: skip
    for metric, body in figures:
        link = f'href="/review/reports/{hand.exam_id}/metrics/{metric}.csv?from=2025-03-12&amp;to=2025-03-12"'
        assert link in body
        assert parsed_svg(body).find(f"{SVG}title") is not None
    assert bar_titles(parsed_svg(figures[0][1])) == [
        "Clean: 0", "Suspicious: 1", "Rules Violation: 0", "Not Reviewed: 0", "awaiting second review: 1",
        "not yet reviewed: 0",
    ]  # fmt: skip
    assert bar_titles(parsed_svg(figures[5][1])) == [
        f"{hand.users['r1']}, final outcomes: 1",
        f"{hand.users['r1']}, second reviews: 0",
    ]
    # the session table and the session CSV keep to the range too
    assert hand.sessions["S3"] in page and hand.sessions["S4"] in page and hand.sessions["S1"] not in page
    assert 'name="from" value="2025-03-12"' in page and 'name="to" value="2025-03-12"' in page
    exported = csv_rows(browser, f"/review/reports/{hand.exam_id}?format=csv&from=2025-03-12&to=2025-03-12")
    assert sorted(row[0] for row in exported[1:]) == sorted([hand.sessions["S3"], hand.sessions["S4"]])


def test_bad_dates_wrong_users_and_unknown_metrics_are_refused(hand: HandBuilt, officer: tuple[str, Browser]) -> None:
    url, browser = officer
    for path in (f"/review/reports/{hand.exam_id}?from=2025-13-01", f"/review/reports/{hand.exam_id}/metrics/"
                 "outcomes.csv?from=2025-03-12&to=2025-03-01"):  # fmt: skip
        refused = browser.get(path)
        assert refused.status_code == 422
        assert "YYYY-MM-DD" in refused.text or "swap them" in refused.text
    assert browser.get(f"/review/reports/{hand.exam_id}/metrics/nothing.csv").status_code == 404
    assert browser.get(f"/review/reports/{hand.other_exam_id}/metrics/outcomes.csv").status_code == 404
    with Browser(url) as reviewer:
        assert reviewer.login(hand.users["reviewer"], PASSWORD).status_code == 303
        assert reviewer.get(f"/review/reports/{hand.exam_id}/metrics/outcomes.csv").status_code == 403


def parsed_svg(html: str) -> ET.Element:
    found = re.search(r"<svg.*?</svg>", html, re.S)
    assert found is not None
    return ET.fromstring(found[0])


def bar_titles(svg: ET.Element) -> list[str]:
    return [str(bar.findtext(f"{SVG}title")) for bar in bars(svg)]


def bars(svg: ET.Element) -> list[ET.Element]:
    return [rect for rect in svg.iter(f"{SVG}rect") if rect.get("class") == "bar"]


# -- the charts alone -----------------------------------------------------------------------------------------
HOSTILE = '<script>alert("x")</script> & co'


def test_a_bar_chart_is_well_formed_svg_with_one_bar_per_value_and_lengths_in_proportion() -> None:
    svg = ET.fromstring(bar_chart("Flags <per> hour", [Bar(HOSTILE, 2.0), Bar("b", 1.0, "1 an hour"), Bar("c", 0.0)]))
    assert svg.get("viewBox") == "0 0 640 78" and svg.findtext(f"{SVG}title") == "Flags <per> hour"
    assert [float(bar.get("width", "")) for bar in bars(svg)] == [300.0, 150.0, 0.0]
    assert bar_titles(svg) == [f"{HOSTILE}: 2", "b: 1 an hour", "c: 0"]
    assert not list(svg.iter(f"{SVG}script")) and not list(svg.iter("script"))  # the label stayed text
    assert HOSTILE in svg.findtext(f"{SVG}desc", "")
    shares = ET.fromstring(bar_chart("rates", [Bar("a", 0.5)], maximum=1.0))
    assert [float(bar.get("width", "")) for bar in bars(shares)] == [150.0]


def test_a_column_chart_has_heights_in_proportion_to_its_values() -> None:
    svg = ET.fromstring(column_chart("turnaround", [Bar("< 1 h", 4), Bar("1-4 h", 1), Bar("> 3 d", 2)]))
    heights = [float(bar.get("height", "")) for bar in bars(svg)]
    assert heights == [160.0, 40.0, 80.0]
    assert [float(bar.get("y", "")) + h for bar, h in zip(bars(svg), heights, strict=True)] == [184.0] * 3  # one base


def test_a_stacked_chart_puts_each_rows_parts_end_to_end() -> None:
    rows = [StackedRow("ann", (3, 1)), StackedRow("bob & co", (0, 2))]
    svg = ET.fromstring(stacked_bar_chart("throughput", rows, ("finals", "seconds")))
    drawn = [(float(bar.get("x", "")), float(bar.get("width", ""))) for bar in bars(svg)]
    assert drawn == [(210.0, 225.0), (435.0, 75.0), (210.0, 0.0), (210.0, 150.0)]
    assert bar_titles(svg)[3] == "bob & co, seconds: 2"
    with pytest.raises(ValueError, match="one part per series"):
        stacked_bar_chart("x", [StackedRow("a", (1,))], ("finals", "seconds"))
    with pytest.raises(ValueError, match="0 or more"):
        bar_chart("x", [Bar("a", -1)])


def test_a_chart_with_nothing_to_draw_says_so() -> None:
    for empty in (bar_chart("t", []), column_chart("t", []), stacked_bar_chart("t", [], ("a",))):
        svg = ET.fromstring(empty)
        assert not bars(svg) and "Nothing to chart." in "".join(svg.itertext())


@pytest.mark.parametrize(
    ("waits_h", "median_h", "p90_h"),
    [
        ([1.0], 1.0, 1.0),
        ([2.0, 1.0], 1.5, 2.0),
        ([float(h) for h in range(1, 11)], 5.5, 9.0),
        ([1.0] * 9 + [50.0], 1.0, 1.0),
        ([float(h) for h in range(1, 71)], 35.5, 63.0),
    ],
)
def test_turnaround_takes_the_median_and_the_nearest_rank_90th_percentile(
    waits_h: list[float], median_h: float, p90_h: float
) -> None:
    start = at(1, 0)
    t = turnaround([TurnaroundLine(str(i), start, start + timedelta(hours=h)) for i, h in enumerate(waits_h)])
    assert (t.median_s, t.p90_s, t.max_s) == (median_h * 3600, p90_h * 3600, max(waits_h) * 3600)
    assert sum(b.sessions for b in t.buckets) == len(waits_h)


def test_a_wait_on_a_bucket_bound_falls_in_the_later_bucket() -> None:
    assert [bucket_of(s) for s in (0, 3599.9, 3600, 86399, 86400, 3 * 86400)] == [
        "< 1 h", "< 1 h", "1-4 h", "4-24 h", "1-3 d", "> 3 d"
    ]  # fmt: skip
