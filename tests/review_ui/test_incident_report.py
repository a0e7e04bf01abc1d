"""The incident report: a session as a page and as a PDF for an appeal panel; officers in scope only, audited."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np
import pypdfium2
from fastapi import FastAPI, Request, Response
from sqlalchemy import select

from core.tables import AuditEvent, FlagSegment
from proctor.local_server import BackgroundServer
from review_ui.incident_report import data_uri, render_pdf
from tests.review_ui.conftest import World, enrol_with_identity
from tests.review_ui.test_review import flag_ids

APPEAL = "the candidate appeals: the second person was the invigilator"
A4_POINTS = (595.3, 841.9)


def face_jpeg() -> bytes:
    image = np.full((96, 96, 3), 200, dtype=np.uint8)
    cv2.circle(image, (48, 48), 30, (40, 90, 160), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def decide_and_appeal(world: World) -> list[str]:
    """Session a: two flags decided, a confirmed Rules Violation (version 1), reopened for an appeal and
    decided again as Clean (version 2). Returns the flag ids in time order."""
    base = f"/review/sessions/{world.sessions['a']}"
    no_face, two_faces, _away = flags = flag_ids(world, "a")
    reviewer = world.browser("reviewer_a")
    assert reviewer.submit(f"{base}/claim").is_success
    for flag, decision, note in (
        (no_face, "dismissed", "a cat walked by"),
        (two_faces, "confirmed", "someone at the desk"),
    ):
        assert reviewer.submit(f"{base}/flags/{flag}/decision", decision=decision, note=note).is_success
    assert reviewer.submit(f"{base}/outcome", outcome="Rules Violation", note="second person").is_success
    second = world.browser("reviewer_a2")
    assert second.submit(f"{base}/claim").is_success
    assert second.submit(f"{base}/second-review", verdict="confirm", note="agreed").json()["status"] == "final"
    assert world.browser("officer_a").submit(f"{base}/reopen", reason=APPEAL).is_success
    assert reviewer.submit(f"{base}/claim").is_success
    assert reviewer.submit(f"{base}/outcome", outcome="Clean").json()["status"] == "final"
    return flags


def stored_frame(world: World, flag_id: str) -> bytes:
    with world.context.db() as db:
        segment = db.get(FlagSegment, flag_id)
        assert segment is not None
        return b"".join(world.context.store.iter_chunks(segment.evidence_keys[0]))


def report_views(world: World, session_id: str) -> list[AuditEvent]:
    with world.context.db() as db:
        return list(
            db.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.session_id == session_id,
                    AuditEvent.action.in_(("view_incident_report", "export_incident_report")),
                )
                .order_by(AuditEvent.seq)
            )
        )


def test_the_report_shows_the_session_its_flags_decisions_outcome_history_identity_and_audit_trail(
    world: World,
) -> None:
    session_id = world.sessions["a"]
    enrol_with_identity(world, "a", face_jpeg())
    no_face, two_faces, away = decide_and_appeal(world)
    officer = world.browser("officer_a")

    response = officer.get(f"/review/sessions/{session_id}/report")
    assert response.status_code == 200
    # The frames are data: URIs, which the review UI's usual policy would block: the page allows them.
    assert "img-src 'self' data:" in response.headers["content-security-policy"]
    page = response.text
    assert f'<code id="session-id">{session_id}</code>' in page
    assert f'href="/review/sessions/{session_id}/report.pdf"' in page and "Download PDF" in page
    headline = page.split('id="current-outcome">', 1)[1].split("</p>", 1)[0]
    assert " ".join(re.sub(r"<[^>]+>", "", headline).split()) == "Outcome: Clean (final, version 2)"

    def flag_block(flag_id: str) -> str:
        return page.split(f'data-flag="{flag_id}"', 1)[1].split("</article>", 1)[0]

    dismissed, confirmed, undecided = flag_block(no_face), flag_block(two_faces), flag_block(away)
    assert "no face" in dismissed and 'data-decision="dismissed"' in dismissed and "a cat walked by" in dismissed
    assert f"by {world.users['reviewer_a']}" in dismissed
    assert "9 of 10 sampled frames showed no face" in dismissed  # the explanation the session page shows
    assert 'data-decision="confirmed"' in confirmed and "someone at the desk" in confirmed
    assert 'data-decision=""' in undecided and "undecided" in undecided
    # Each flag's evidence frame, embedded from the object store, byte for byte.
    for flag_id in (no_face, two_faces, away):
        assert f'src="{data_uri(stored_frame(world, flag_id))}"' in flag_block(flag_id)
    # The figure: a bar per flag in its kind's row, no script anywhere.
    assert page.count('<rect class="bar"') == 3 and "<script" not in page

    history = page.split('id="outcome-history"', 1)[1].split("</ol>", 1)[0]
    assert 'data-version="1"' in history and "Rules Violation" in history and APPEAL in history
    assert 'data-version="2"' in history and "Clean" in history
    assert f"confirmed by {world.users['reviewer_a2']}" in history

    assert "8 of 9 face samples match the enrolment" in page and 'alt="enrolment photo"' in page
    reviewers = page.split('id="reviewers"', 1)[1].split("</section>", 1)[0]
    for label in ("reviewer_a", "reviewer_a2", "officer_a"):
        assert f'data-reviewer="{world.users[label]}"' in reviewers
    assert "reopened version 1 for an appeal" in reviewers

    with world.context.db() as db:
        trail = db.scalars(select(AuditEvent).where(AuditEvent.session_id == session_id)).all()
    listed = [e for e in trail if f'data-audit-id="{e.id}"' in page]
    assert {e.action for e in listed} >= {"claim", "review_final", "review_reopened"}
    assert len(listed) == len(trail) - 1  # all but this view's own entry, written once the page was made
    (view,) = report_views(world, session_id)
    assert view.actor == f"user:{world.users['officer_a']}" and view.detail["format"] == "html"


def test_the_pdf_is_an_attachment_whose_first_page_names_the_session_and_its_outcome(world: World) -> None:
    session_id = world.sessions["a"]
    decide_and_appeal(world)
    officer = world.browser("officer_a")

    response = officer.get(f"/review/sessions/{session_id}/report.pdf")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == f'attachment; filename="incident-report-{session_id}.pdf"'
    document = pypdfium2.PdfDocument(response.content)
    page = document[0]
    text = page.get_textpage().get_text_range()
    assert session_id in text and "Outcome: Clean" in text and "Incident report" in text
    assert "Download PDF" not in text  # the page's links are for the screen only
    assert tuple(round(side, 1) for side in page.get_size()) == A4_POINTS
    pixels = page.render(scale=1).to_numpy()
    assert pixels.shape[:2] == (842, 596) or pixels.shape[:2] == (842, 595)
    not_white = (pixels[..., :3] < 200).any(axis=-1)
    assert not_white.mean() > 0.01  # text, tables and the figure, not a blank page
    assert len(document) >= 2  # the flags and the audit trail follow
    (export,) = report_views(world, session_id)
    assert export.action == "export_incident_report" and export.detail["format"] == "pdf"
    assert export.actor == f"user:{world.users['officer_a']}"


def test_only_officers_and_admins_within_their_scope_get_the_report(world: World) -> None:
    own, other = world.sessions["a"], world.sessions["b"]
    reviewer = world.browser("reviewer_a")
    assert reviewer.get(f"/review/sessions/{own}/report").status_code == 403
    assert reviewer.get(f"/review/sessions/{own}/report.pdf").status_code == 403
    assert 'id="incident-report"' not in reviewer.page(f"/review/sessions/{own}").text
    officer = world.browser("officer_a")
    assert officer.get(f"/review/sessions/{other}/report").status_code == 404  # another tenant's: as if none
    assert officer.get(f"/review/sessions/{other}/report.pdf").status_code == 404
    assert officer.get("/review/sessions/no-such-session/report").status_code == 404
    assert f'href="/review/sessions/{own}/report"' in officer.page(f"/review/sessions/{own}").text
    assert world.browser("admin").get(f"/review/sessions/{other}/report").status_code == 200
    assert report_views(world, own) == []  # refusals are audited as refusals, not as views


def test_the_pdf_renderer_fetches_nothing_but_data_uris() -> None:
    """A report that names a URL or a local file (a note cannot, it is escaped; but a template change might)
    must not make the server fetch it: only data: images are drawn."""
    asked: list[str] = []
    app = FastAPI()

    @app.get("/{path:path}")
    def anything(request: Request, path: str) -> Response:
        asked.append(path)
        return Response(b"body { background: black }", media_type="text/css")

    red = cv2.imencode(".png", np.full((40, 40, 3), (0, 0, 255), dtype=np.uint8))[1].tobytes()
    with BackgroundServer(app) as url:
        html = (
            f'<link rel="stylesheet" href="{url}/style.css"><img src="{url}/frame.jpg">'
            '<img src="file:///etc/hostname">'
            f'<img src="data:image/png;base64,{base64.b64encode(red).decode()}" style="width: 200px">'
        )
        pdf = render_pdf(html, f'@import url("{url}/more.css");')
    assert asked == []
    pixels = pypdfium2.PdfDocument(pdf)[0].render(scale=1).to_numpy()
    rgb = pixels[..., :3].reshape(-1, 3).astype(int)
    reds = ((rgb.max(axis=1) - rgb.min(axis=1)) > 150).sum()  # the data: image is drawn, in colour
    assert reds > 1000
