"""The incident report: one session as a document an integrity officer can hand to an appeal panel.

`GET /review/sessions/{id}/report` shows it as a page, `.../report.pdf` downloads it as a PDF; both are rendered
from the one template (`incident_report.html`, with `static/incident_report.css`), so what the panel reads is what
the officer saw. It holds the session's metadata and outcome history, a timeline figure (server-side SVG), each
flag with its evidence frames, explanation, decision and note, the identity evidence, the reviewers and the
session's audit entries. It is gathered with the session page's own functions (`session_view`, `outcome_lines`,
`identity_view`, `session_policy`), so the two never disagree.

Images are embedded as data: URIs read from object storage, and the PDF renderer (WeasyPrint, which lays out the
same HTML and CSS) fetches nothing else: its URL fetcher refuses every scheme but `data`, so a report can never
make the server reach the network or read a local file. The page sets its own Content-Security-Policy, the
review UI's with data: images allowed. Officers and admins only, within their scope; every view and every
export is audited.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.audit_texts import readable_details
from core.db import utcnow
from core.tables import AuditEvent, ExamSession, FlagDecision, FlagSegment, User
from core.vocabulary import FlagKind
from review_ui.decisions import ReviewRefused
from review_ui.http import DB, HERE, Who, client_ip, review_app, session_or_404
from review_ui.identity_view import IdentityView, identity_view
from review_ui.officer_pages import require_officer
from review_ui.page_policy import REPORT_POLICY
from review_ui.policies import SessionPolicy, session_policy
from review_ui.queue import FlagView, SessionView, session_view, timeline_ticks
from review_ui.session_pages import OutcomeLine, outcome_lines
from storage.object_store import ObjectNotFound, ObjectStore

TEMPLATE = "incident_report.html"
STYLESHEET = HERE / "static" / "incident_report.css"
STYLESHEET_URL = "/review/static/incident_report.css"
MAX_FRAMES_PER_FLAG = 4
"""Evidence frames embedded per flag; the session page has the rest (a flag rarely has more than three)."""
MAX_AUDIT_ENTRIES = 1000
"""Audit entries the report lists, oldest first; `/review/audit?session=...` has them all."""

# The timeline figure, in SVG user units (the page scales it to its width).
FIGURE_WIDTH, LABEL_WIDTH, ROW_HEIGHT, AXIS_HEIGHT = 1000.0, 170.0, 24.0, 22.0
DECISION_FILL = {"confirmed": "#b3261e", "dismissed": "#8a8a8a", None: "#d98a00"}
"""A flag's colour in the figure by its decision (None: undecided); the legend under the figure says which."""

router = APIRouter(prefix="/review", include_in_schema=False)


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    fill: str
    label: str


@dataclass(frozen=True)
class FigureRow:
    kind: str
    y: float
    bars: list[Bar]


@dataclass(frozen=True)
class TimelineFigure:
    """Flags per kind along the recording: one row per kind, one bar per flag, coloured by its decision."""

    width: float
    height: float
    label_width: float
    row_height: float
    rows: list[FigureRow]
    ticks: list[tuple[float, str]]  # (x, "m:ss")


def timeline_figure(flags: Sequence[FlagView], duration_s: float) -> TimelineFigure:
    """The figure's geometry. Every detector kind has its row, flagged or not (an empty row says the detector
    found nothing there); kinds only reviewers add follow when the session has them. A flag too short to see
    at this scale is drawn 2 units wide."""
    span = max(duration_s, max((f.end_s for f in flags), default=0.0), 1.0)
    plot = FIGURE_WIDTH - LABEL_WIDTH
    kinds = [k.value for k in FlagKind] + sorted({f.kind for f in flags} - {k.value for k in FlagKind})
    rows = []
    for index, kind in enumerate(kinds):
        bars = [
            Bar(
                x=round(LABEL_WIDTH + plot * f.start_s / span, 2),
                width=round(max(plot * (f.end_s - f.start_s) / span, 2.0), 2),
                fill=DECISION_FILL.get(f.decision, DECISION_FILL[None]),
                label=f"{kind.replace('_', ' ')} {f.start_s:.1f}-{f.end_s:.1f} s, {f.decision or 'undecided'}",
            )
            for f in flags
            if f.kind == kind
        ]
        rows.append(FigureRow(kind=kind, y=index * ROW_HEIGHT, bars=bars))
    ticks = [(round(LABEL_WIDTH + plot * t / span, 2), label) for t, label in timeline_ticks(span)]
    return TimelineFigure(
        width=FIGURE_WIDTH,
        height=len(rows) * ROW_HEIGHT + AXIS_HEIGHT,
        label_width=LABEL_WIDTH,
        row_height=ROW_HEIGHT,
        rows=rows,
        ticks=ticks,
    )


@dataclass(frozen=True)
class ReportFlag:
    flag: FlagView
    frames: list[str | None]  # data: URIs; None for a frame no longer stored
    more_frames: int
    decided_by: str | None
    decided_at: datetime | None
    note_shared: bool


@dataclass(frozen=True)
class ReviewerLine:
    username: str
    did: list[str]


@dataclass(frozen=True)
class IncidentReport:
    view: SessionView
    tenant: str
    generated_at: datetime
    generated_by: str
    policy: SessionPolicy
    history: list[OutcomeLine]
    figure: TimelineFigure
    flags: list[ReportFlag]
    identity: IdentityView
    enrolment_image: str | None
    reference_image: str | None
    reviewers: list[ReviewerLine]
    audit_entries: list[AuditEvent]
    audit_details: dict[int, dict[str, Any]]
    """Each entry's detail as a person reads it, by entry id: its notes in words (`core.audit_texts`)."""
    audit_total: int

    @property
    def session(self) -> ExamSession:
        return self.view.session


def data_uri(body: bytes) -> str:
    """An image as a data: URI; the pipeline stores JPEG frames, an enrolment photo may be a PNG."""
    media_type = "image/png" if body.startswith(b"\x89PNG") else "image/jpeg"
    return f"data:{media_type};base64,{base64.b64encode(body).decode()}"


def stored_image(store: ObjectStore, key: str | None) -> str | None:
    """An image from object storage as a data: URI, or None when there is none (erased, or never made)."""
    if not key:
        return None
    try:
        return data_uri(b"".join(store.iter_chunks(key)))
    except ObjectNotFound:
        return None


def reviewer_lines(steps: Iterable[tuple[str | None, str]]) -> list[ReviewerLine]:
    """(username, what they did) pairs as one line per person, in the order they first appear; None is a user
    removed since, who is still listed: the panel should know that someone decided."""
    lines: dict[str, list[str]] = {}
    for username, did in steps:
        done = lines.setdefault(username or "a removed user", [])
        if did not in done:
            done.append(did)
    return [ReviewerLine(username=name, did=did) for name, did in lines.items()]


def incident_report(
    db: Session, store: ObjectStore, session: ExamSession, officer: str, now: datetime
) -> IncidentReport:
    """Everything the report shows, gathered as the session page gathers it."""
    view = session_view(db, session, now)
    history = outcome_lines(db, session.id)
    segments = {seg.id: seg for seg in db.scalars(select(FlagSegment).where(FlagSegment.session_id == session.id))}
    decisions = {d.segment_id: d for d in db.scalars(select(FlagDecision).where(FlagDecision.session_id == session.id))}
    people = {d.reviewer_id for d in decisions.values()} | {s.created_by for s in segments.values()}
    names: dict[str | None, str] = {
        user_id: username
        for user_id, username in db.execute(select(User.id, User.username).where(User.id.in_(people - {None})))
    }
    flags = []
    for flag in view.flags:
        keys = segments[flag.id].evidence_keys
        decision = decisions.get(flag.id)
        flags.append(
            ReportFlag(
                flag=flag,
                frames=[stored_image(store, key) for key in keys[:MAX_FRAMES_PER_FLAG]],
                more_frames=max(len(keys) - MAX_FRAMES_PER_FLAG, 0),
                decided_by=names.get(decision.reviewer_id) if decision else None,
                decided_at=decision.decided_at if decision else None,
                note_shared=bool(decision and decision.note_shared),
            )
        )
    steps: list[tuple[str | None, str]] = [
        (names.get(s.created_by), "added flags") for s in segments.values() if s.created_by is not None
    ]
    steps += [(names.get(d.reviewer_id), "decided flags") for d in decisions.values()]
    if view.review is not None:
        steps.append((view.reviewer, "set the current outcome"))
        if view.review.second_reviewer_id:
            steps.append((view.second_reviewer, "confirmed it as second reviewer"))
    for line in history:
        steps.append((line.decided_by, f"decided version {line.version}"))
        if line.second_by:
            steps.append((line.second_by, f"confirmed version {line.version}"))
        if line.reopened_at:
            steps.append((line.reopened_by, f"reopened version {line.version} for an appeal"))
    identity = identity_view(db, session)
    trail = (AuditEvent.session_id == session.id, AuditEvent.tenant_id == session.tenant_id)
    entries = list(db.scalars(select(AuditEvent).where(*trail).order_by(AuditEvent.seq).limit(MAX_AUDIT_ENTRIES)))
    return IncidentReport(
        view=view,
        tenant=session.tenant.slug,
        generated_at=now,
        generated_by=officer,
        policy=session_policy(db, session),
        history=history,
        figure=timeline_figure(view.flags, session.duration_s or 0.0),
        flags=flags,
        identity=identity,
        enrolment_image=stored_image(store, identity.enrolment.object_key)
        if identity.enrolment and identity.enrolment_is_photo
        else None,
        reference_image=stored_image(store, (session.identity or {}).get("reference_frame")),
        reviewers=reviewer_lines(steps),
        audit_entries=entries,
        audit_details=readable_details(db, entries),
        audit_total=db.scalar(select(func.count()).select_from(AuditEvent).where(*trail)) or 0,
    )


class PdfUnavailable(ReviewRefused):
    """WeasyPrint cannot load its system libraries (Pango): the PDF cannot be made on this host."""


def render_pdf(html: str, css: str) -> bytes:
    """The report's HTML and CSS as a PDF. The URL fetcher admits only data: URIs: nothing is fetched from the
    network or the disk, whatever the HTML names. CPU work: call it from a worker thread, never the event loop."""
    try:
        from weasyprint import CSS, HTML
        from weasyprint.urls import URLFetcher
    except OSError as exc:  # WeasyPrint loads Pango through cffi when imported
        raise PdfUnavailable(
            503, f"PDF export needs Pango on the server (Debian: libpango-1.0-0 libpangoft2-1.0-0): {exc}"
        ) from None
    fetcher = URLFetcher(allowed_protocols=("data",), allow_redirects=False)
    pdf: bytes = HTML(string=html, url_fetcher=fetcher).write_pdf(stylesheets=[CSS(string=css, url_fetcher=fetcher)])
    return pdf


def report_html(request: Request, report: IncidentReport, *, for_pdf: bool) -> str:
    template = review_app(request).templates.env.get_template(TEMPLATE)
    return template.render(
        report=report,
        s=report.session,
        view=report.view,
        stylesheet=None if for_pdf else STYLESHEET_URL,
        decision_fill=DECISION_FILL,
    )


def _report(request: Request, db: Session, who: Who, session_id: str) -> IncidentReport:
    require_officer(who, "incident reports are")
    session = session_or_404(db, who, session_id)
    return incident_report(db, review_app(request).store, session, who.user.username, utcnow())


def _record(request: Request, db: Session, who: Who, report: IncidentReport, action: str, fmt: str) -> None:
    """Audit a view or an export once it is made (a PDF that failed to render was not handed to anyone)."""
    audit.record(
        db, f"user:{who.user.username}", action, at=utcnow(), tenant_id=report.session.tenant_id,
        session_id=report.session.id, ip=client_ip(request), format=fmt, flags=len(report.flags),
    )  # fmt: skip
    db.commit()


@router.get("/sessions/{session_id}/report")
def incident_report_page(request: Request, session_id: str, db: DB, who: Who) -> HTMLResponse:
    report = _report(request, db, who, session_id)
    html = report_html(request, report, for_pdf=False)
    _record(request, db, who, report, "view_incident_report", "html")
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "Content-Security-Policy": REPORT_POLICY})


@router.get("/sessions/{session_id}/report.pdf")
def incident_report_pdf(request: Request, session_id: str, db: DB, who: Who) -> Response:
    """A sync route: FastAPI runs it in its thread pool, so the rendering (CPU work) never holds the event loop."""
    report = _report(request, db, who, session_id)
    pdf = render_pdf(report_html(request, report, for_pdf=True), STYLESHEET.read_text())
    _record(request, db, who, report, "export_incident_report", "pdf")
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="incident-report-{report.session.id}.pdf"',
            "Cache-Control": "no-store",
        },
    )
