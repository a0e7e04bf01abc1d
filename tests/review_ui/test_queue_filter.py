"""The queue's filter: read from the form as a browser sends it, and carried by the tabs and paging links."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from urllib.parse import parse_qs, urlsplit

from review_ui.queue import QueueFilter, QueueStatus, parse_queue_filter, timeline_ticks


def test_empty_fields_mean_any() -> None:
    query, problems = parse_queue_filter({"status": "to_review", "exam": "", "kind": "", "since": "", "until": ""})
    assert query == QueueFilter() and problems == []


def test_unreadable_fields_are_named_and_left_out() -> None:
    query, problems = parse_queue_filter({"kind": "phone", "since": "yesterday", "until": "2026-12-05", "page": "x"})
    assert query == QueueFilter(until=date(2026, 12, 5))
    assert [p.split(":")[0] for p in problems] == ["Flag", "From", "Page"]


def test_tabs_and_pages_keep_every_filter() -> None:
    query = QueueFilter(QueueStatus.TO_REVIEW, "exam-1", "no_face", date(2026, 12, 1), date(2026, 12, 5), page=3)
    tab = parse_qs(urlsplit(query.link(status=QueueStatus.REVIEWED)).query)
    expected = {"exam": ["exam-1"], "kind": ["no_face"], "since": ["2026-12-01"], "until": ["2026-12-05"]}
    assert tab == {"status": ["reviewed"], **expected}  # a new tab starts at page 1
    following = parse_qs(urlsplit(query.link(page=4)).query)
    assert following == {"status": ["to_review"], **expected, "page": ["4"]}
    assert parse_queue_filter({k: v[0] for k, v in following.items()}) == (replace(query, page=4), [])


def test_the_timeline_axis_has_round_marks() -> None:
    assert timeline_ticks(24.0) == [(0.0, "0:00"), (5.0, "0:05"), (10.0, "0:10"), (15.0, "0:15"), (20.0, "0:20")]
    ninety_minutes = timeline_ticks(90 * 60)
    assert len(ninety_minutes) == 10 and ninety_minutes[1] == (600.0, "10:00")
    assert timeline_ticks(0) == []
