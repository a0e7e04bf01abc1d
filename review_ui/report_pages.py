"""Integrity officers' exam reports: the index of exams, each exam's report page with its charts, and the exports.

An exam's page holds one chart per metric of `review_ui.report_metrics`, drawn as inline SVG on the server
(`review_ui.svg_charts`: no script, nothing to build), each with a link to the same figures as CSV, beside the
report's tables (`review_ui.reports`). Everything on it, and every export, counts the sessions that started within
the date range in the URL (`?from=YYYY-MM-DD&to=YYYY-MM-DD`, either end optional; whole UTC days): a GET form, so a
filtered report can be bookmarked and shared. A range that cannot be read is refused with 422 and how to write it.
Each view and each export is audited, with its format, metric and range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from core import audit
from core.db import utcnow
from core.vocabulary import FlagSource
from review_ui.decisions import ReviewRefused
from review_ui.http import DB, Who, client_ip, render
from review_ui.officer_pages import require_officer
from review_ui.report_metrics import HOUR_S, METRIC_TABLES, ExamMetrics, ExamWindow, exam_metrics, exam_window
from review_ui.reports import BadDateRange, DateRange, csv_document, exam_report, exam_summaries, report_csv
from review_ui.svg_charts import Bar, StackedRow, bar_chart, column_chart, stacked_bar_chart

REPORT_PAGE_SESSIONS = 500
"""Session lines an exam report shows on its page; the CSV export has them all."""

router = APIRouter(prefix="/review", include_in_schema=False)

FromDate = Annotated[str | None, Query(alias="from")]
ToDate = Annotated[str | None, Query(alias="to")]


@dataclass(frozen=True)
class MetricChart:
    metric: str
    """Its name in `METRIC_TABLES`, which names its CSV too."""
    heading: str
    svg: str
    """Markup from `review_ui.svg_charts`, every text in it escaped."""
    summary: str


def date_range(first: str | None, last: str | None) -> DateRange:
    """The report's range from its URL; a range that cannot be read is refused with 422 and how to write it."""
    try:
        return DateRange.parse(first, last)
    except BadDateRange as error:
        raise ReviewRefused(422, str(error)) from None


def report_charts(m: ExamMetrics) -> list[MetricChart]:
    """One chart per metric, in `METRIC_TABLES` order, each with a line that sums it up."""
    flag_bars = [
        Bar(
            _kind(r.kind) + ("" if r.source == FlagSource.DETECTOR else " (added)"),
            r.per_hour or 0.0,
            f"{r.per_hour:.2f} an hour ({r.flags})" if r.per_hour is not None else f"{r.flags} (no video)",
        )
        for r in m.flag_rates
    ]
    confirm_bars = [
        Bar(_kind(r.kind), r.rate or 0.0, f"{r.rate:.0%} of {r.decided}" if r.rate is not None else "no decisions")
        for r in m.confirm_rates
    ]
    s, t = m.second_reviews, m.turnaround
    agreement = [StackedRow("second reviews", (s.confirmed, s.returned), f"{s.confirmed} of {s.done} confirmed")]
    agreed = "No second review yet."
    if s.agreement is not None:
        agreed = f"Agreement {s.agreement:.0%} over {_plural(s.done, 'second review')}."
    waited = "No final outcome yet."
    if t.median_s is not None:
        waited = (
            f"Median {_duration(t.median_s)}, 90th percentile {_duration(t.p90_s)}, longest {_duration(t.max_s)}, "
            f"over {_plural(len(t.lines), 'session')}."
        )
    reviewers = [
        StackedRow(r.username, (r.final_outcomes, r.second_reviews), f"{r.total} on {_plural(len(r.days), 'day')}")
        for r in m.throughput
    ]
    return [
        MetricChart(
            "outcomes",
            "Outcomes",
            bar_chart("Sessions per outcome", [Bar(o.outcome, o.sessions) for o in m.outcomes]),
            f"{_plural(m.sessions, 'session')} in the range.",
        ),
        MetricChart(
            "flags_per_hour",
            "Flags per hour of video",
            bar_chart("Flags per hour of video, by kind", flag_bars),
            f"Over {_video_length(m.video_s)} of video. Kinds marked (added) are flags reviewers added where no "
            "detector flagged.",
        ),
        MetricChart(
            "confirm_rate",
            "Confirm rate per kind",
            bar_chart("Share of decided detector flags that reviewers confirmed", confirm_bars, maximum=1.0),
            "How precise each detector is in practice: a low rate means many false flags.",
        ),
        MetricChart(
            "second_review",
            "Second-review agreement",
            stacked_bar_chart(
                "Rules Violations confirmed or returned by the second reviewer",
                agreement if s.done else [],
                ("confirmed", "returned"),
            ),
            agreed,
        ),
        MetricChart(
            "turnaround",
            "Upload to final review",
            column_chart(
                "Sessions by time from upload to first final outcome", [Bar(b.bucket, b.sessions) for b in t.buckets]
            ),
            waited,
        ),
        MetricChart(
            "throughput",
            "Reviewer throughput",
            stacked_bar_chart("Sessions decided per reviewer", reviewers, ("final outcomes", "second reviews")),
            "Final outcomes decided first, and second reviews done; the CSV has them per day.",
        ),
    ]


@router.get("/reports")
def reports(request: Request, db: DB, who: Who) -> Response:
    require_officer(who, "reports are")
    exams = exam_summaries(db, who.scope)
    audit.record(db, f"user:{who.user.username}", "view_reports", at=utcnow(), ip=client_ip(request))
    db.commit()
    return render(request, "reports.html", who, exams=exams)


@router.get("/reports/{exam_id}")
def exam_report_page(
    request: Request,
    db: DB,
    who: Who,
    exam_id: str,
    format: Annotated[str, Query(pattern="^(html|csv)$")] = "html",
    first: FromDate = None,
    last: ToDate = None,
) -> Response:
    """The exam's report over the sessions started within the range: its charts and tables, or (`format=csv`) every
    session line."""
    require_officer(who, "reports are")
    within = date_range(first, last)
    shown = None if format == "csv" else REPORT_PAGE_SESSIONS
    report = exam_report(db, who.scope, exam_id, within=within, max_sessions=shown)
    if report is None:
        raise ReviewRefused(404, "no such exam")
    window = ExamWindow(report.exam_id, report.external_id, report.tenant_id, report.tenant, within)
    charts = report_charts(exam_metrics(db, window, report)) if format == "html" else []
    audit.record(
        db,
        f"user:{who.user.username}",
        "view_report",
        at=utcnow(),
        tenant_id=report.tenant_id,
        ip=client_ip(request),
        exam_id=report.exam_id,
        format=format,
        sessions=len(report.sessions),
        **within.audit_detail(),
    )
    db.commit()
    if format == "csv":
        filename = f"report-{report.tenant}-{report.external_id}.csv"
        return Response(
            report_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
        )
    return render(
        request, "report.html", who, report=report, shown_max=REPORT_PAGE_SESSIONS, within=within, charts=charts
    )


@router.get("/reports/{exam_id}/metrics/{metric}.csv")
def metric_csv(
    request: Request, db: DB, who: Who, exam_id: str, metric: str, first: FromDate = None, last: ToDate = None
) -> Response:
    """One metric of the exam report as CSV, over the sessions started within the range."""
    require_officer(who, "reports are")
    within = date_range(first, last)
    window = exam_window(db, who.scope, exam_id, within)
    if window is None:
        raise ReviewRefused(404, "no such exam")
    if metric not in METRIC_TABLES:
        raise ReviewRefused(404, f"no such metric; the report exports {', '.join(METRIC_TABLES)}")
    header, rows = METRIC_TABLES[metric](db, window)
    audit.record(
        db,
        f"user:{who.user.username}",
        "view_report",
        at=utcnow(),
        tenant_id=window.tenant_id,
        ip=client_ip(request),
        exam_id=window.exam_id,
        format="csv",
        metric=metric,
        **within.audit_detail(),
    )
    db.commit()
    filename = f"report-{window.tenant}-{window.external_id}-{metric}.csv"
    return Response(
        csv_document(header, rows),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _kind(kind: str) -> str:
    return kind.replace("_", " ")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < HOUR_S:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / HOUR_S:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _video_length(seconds: float) -> str:
    """How much video a figure rests on, in the unit that reads best: minutes under two hours, else hours."""
    return f"{seconds / 60:.0f} minutes" if seconds < 2 * HOUR_S else f"{seconds / HOUR_S:.1f} hours"
