"""Our callbacks to an Open edX LMS through the webhook outbox: `ready`, and `reviewed` once a review is final.

A test LMS over real HTTP issues OAuth tokens (`/oauth2/access_token`) to the right client credentials only and
serves edx-proctoring's two callback routes, which want `Authorization: JWT <token>`. The review is finalised
through the real decision path (`review_ui.decisions`), and the payload edX receives is checked with
edx-proctoring's own `ReviewStatus` (in the venv of `tests.support.edx_venv`) and field by field.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Form, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select, update

from core.context import AppContext
from core.db import utcnow
from core.lms_tables import EdxAttempt, EdxExam, SessionCallback
from core.tables import Exam, ExamSession, WebhookDelivery
from core.tenants import add_tenant, issue_api_key
from core.vocabulary import Decision, DeliveryState, Outcome, Role
from openedx.clients import add_client
from openedx.recorder_side import CHANNEL, READY_EVENT, REVIEWED_EVENT, lms_attempt_url
from proctor.local_server import BackgroundServer
from proctor.samples import SampleSession, build_sample_session
from proctor.wiring import delivery_channels, server_app
from proctor.wiring import secrets as secrets_box
from review_ui.accounts import add_user, assign, external_user
from review_ui.decisions import Actor, claim, decide_flag, set_outcome
from review_ui.results import flags_with_decisions
from review_ui.webhooks import WebhookSender
from tests.review_ui.conftest import FLAGS, SAMPLE_S, World, add_processed_session, webhook_policy
from tests.support.edx_venv import edx_venv

LMS_CLIENT_ID = "proctor-pipeline-worker"
LMS_CLIENT_SECRET = "the-secret-the-lms-gave-us"
# What edx-proctoring does with a review (views.py `BaseReviewCallback.make_review`), short of its database.
EDX_CHECK = """
import json, sys
import django
from django.conf import settings
settings.configure()
django.setup()
from edx_proctoring.statuses import ReviewStatus, SoftwareSecureReviewStatus
data = json.loads(sys.stdin.read())
ReviewStatus.validate(data["status"])
print(json.dumps({
    "review_status": SoftwareSecureReviewStatus.from_standard_status.get(data["status"]),
    "comments": [
        [c.get("start", 0), c.get("stop", 0), c.get("duration", 0), c["comment"], c["status"]]
        for c in data.get("comments", [])
    ],
    "reviewed_by": data.get("reviewed_by"),
}))
"""


@dataclass
class Lms:
    """A test LMS: the tokens it issued, the callbacks it took, and how many `reviewed` calls to fail first."""

    url: str = ""
    issued: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (what, attempt id, body)
    refused: list[str] = field(default_factory=list)  # what it answered 401 to
    fail_reviewed: int = 0
    reject_tokens: bool = False  # answer 401 to every token issued so far (as after a key rotation)


@pytest.fixture
def lms() -> Iterator[Lms]:
    state = Lms()
    app = FastAPI()

    @app.post("/oauth2/access_token")
    def access_token(
        grant_type: Annotated[str, Form()],
        client_id: Annotated[str, Form()],
        client_secret: Annotated[str, Form()],
        token_type: Annotated[str, Form()],
    ) -> JSONResponse:
        good = (grant_type, client_id, client_secret, token_type) == (
            "client_credentials", LMS_CLIENT_ID, LMS_CLIENT_SECRET, "jwt",
        )  # fmt: skip
        if not good:
            state.refused.append("token")
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        state.issued.append(secrets.token_urlsafe(24))
        state.reject_tokens = False
        return JSONResponse({"access_token": state.issued[-1], "expires_in": 36000, "token_type": "JWT"})

    @app.post("/api/edx_proctoring/v1/proctored_exam/attempt/{attempt_id}/{what}")
    async def callback(
        attempt_id: str, what: str, request: Request, authorization: Annotated[str, Header()] = ""
    ) -> JSONResponse:
        if not state.issued or authorization != f"JWT {state.issued[-1]}" or state.reject_tokens:
            state.refused.append(what)
            return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=401)
        if what == "reviewed" and state.fail_reviewed > 0:
            state.fail_reviewed -= 1
            return JSONResponse({"detail": "database busy"}, status_code=500)
        state.calls.append((what, attempt_id, await request.json()))
        return JSONResponse("OK")

    with BackgroundServer(app) as url:
        state.url = url
        yield state


@pytest.fixture(autouse=True)
def outbox_of_this_test(context: AppContext) -> None:
    """Only this test's deliveries are owed: on PostgreSQL the database outlives each test, and a delivery an
    earlier test left pending (its receiver gone) would fall due here and be counted with this test's."""
    with context.db() as db:
        db.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.state == DeliveryState.PENDING.value)
            .values(state=DeliveryState.FAILED.value, last_error="left by an earlier test")
        )
        db.commit()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("edx-callback-sample"), duration_s=SAMPLE_S, codec="vp8")


@dataclass
class Attempt:
    """A processed session of an edX attempt, owing edX its review, and the client it calls back with."""

    context: AppContext
    session_id: str
    attempt_id: str
    client_pk: str
    client_id: str


def edx_attempt(context: AppContext, sample: SampleSession, lms: Lms, lms_secret: str = LMS_CLIENT_SECRET) -> Attempt:
    with BackgroundServer(server_app(context)) as url:
        with context.db() as db:
            tenant = add_tenant(db, f"edx-{uuid.uuid4().hex[:6]}", "an Open edX platform")
            key = issue_api_key(db, tenant)
            issued = add_client(
                db,
                secrets_box(context.settings),
                tenant,
                lms.url,
                lms_client_id=LMS_CLIENT_ID,
                lms_client_secret=lms_secret,
            )
            db.commit()
            tenant_id = tenant.id
        session_id = add_processed_session(World(url, context, keys={"t": key}), "t", sample, exam="final")
    with context.db() as db:
        exam = db.scalar(select(Exam).where(Exam.tenant_id == tenant_id, Exam.external_id == "final"))
        assert exam is not None
        edx_exam = EdxExam(client_pk=issued.row_id, lms_exam_id=7, course_id="course-v1:Org+One+2026", exam_id=exam.id)
        db.add(edx_exam)
        db.flush()
        attempt = EdxAttempt(edx_exam_pk=edx_exam.id, user_id="learner", session_id=session_id, status="ready")
        db.add(attempt)
        db.flush()
        # What the recorder side owes edX (`openedx.recorder_side`): `reviewed` on the final review, `ready` now.
        db.add(
            SessionCallback(
                session_id=session_id, event=REVIEWED_EVENT, channel=CHANNEL,
                url=lms_attempt_url(lms.url, attempt.id, "reviewed"), ref=issued.row_id,
            )
        )  # fmt: skip
        db.add(
            WebhookDelivery(
                tenant_id=tenant_id, session_id=session_id, event=READY_EVENT, channel=CHANNEL, ref=issued.row_id,
                url=lms_attempt_url(lms.url, attempt.id, "ready"), body='{"status": "ready"}', next_attempt_at=utcnow(),
            )
        )  # fmt: skip
        db.commit()
        return Attempt(context, session_id, attempt.id, issued.row_id, issued.client_id)


def sender(context: AppContext, **overrides: Any) -> WebhookSender:
    """The outbox's sender as `proctor serve` wires it, admitting the test LMS on 127.0.0.1."""
    policy = webhook_policy(context, **overrides)
    return WebhookSender(context.db, policy, channels=delivery_channels(context, policy))


def finalise(attempt: Attempt, reviewer_name: str, outcome: Outcome, edx_user: bool) -> None:
    """A reviewer claims the session, confirms the first flag, dismisses the rest and sets the outcome."""
    context = attempt.context
    with context.db() as db:
        session = db.get(ExamSession, attempt.session_id)
        assert session is not None
        if edx_user:
            user = external_user(db, reviewer_name, Role.REVIEWER)
        else:
            user = add_user(db, reviewer_name, "correct horse battery", Role.REVIEWER)
        assign(db, user, session.tenant.slug)
        db.commit()
        actor, now = Actor(user, "127.0.0.1"), utcnow()
        claim(db, session, actor, now, timedelta(minutes=30))
        for number, (segment, _) in enumerate(flags_with_decisions(db, session.id)):
            decision = Decision.CONFIRMED if number == 0 else Decision.DISMISSED
            note = "seen on camera" if number == 0 else ""
            decide_flag(db, session, segment.id, decision, note, actor, now, shared=True)  # for the LMS to read
        set_outcome(db, session, outcome, "a phone in view for two seconds", actor, now)
        db.commit()


def deliveries(context: AppContext, session_id: str, event: str) -> list[WebhookDelivery]:
    with context.db() as db:
        rows = db.scalars(
            select(WebhookDelivery).where(WebhookDelivery.session_id == session_id, WebhookDelivery.event == event)
        ).all()
        for row in rows:
            db.expunge(row)
        return list(rows)


def as_edx_reads_it(payload: dict[str, Any]) -> dict[str, Any]:
    """What `make_review` would store of the payload, with edx-proctoring's own status check (its venv)."""
    done = subprocess.run(
        [str(edx_venv()), "-c", EDX_CHECK], input=json.dumps(payload), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    read: dict[str, Any] = json.loads(done.stdout)
    return read


def test_edx_hears_ready_then_the_final_review_in_its_own_vocabulary(
    context: AppContext, sample: SampleSession, lms: Lms
) -> None:
    attempt = edx_attempt(context, sample, lms)
    plain = WebhookSender(context.db, webhook_policy(context))
    assert plain.send_due() == 0, "a sender without the openedx channel leaves its deliveries to one that has it"
    outbox = sender(context, max_attempts=3, backoff_s=0.1)
    assert outbox.send_due() == 1
    assert lms.calls == [("ready", attempt.attempt_id, {"status": "ready"})]
    assert [d.state for d in deliveries(context, attempt.session_id, READY_EVENT)] == ["delivered"]

    reviewer = f"edx:{attempt.client_id}:grace@example.org"
    finalise(attempt, reviewer, Outcome.SUSPICIOUS, edx_user=True)
    assert outbox.send_due() == 1
    ((what, attempt_id, payload),) = lms.calls[1:]
    assert (what, attempt_id) == ("reviewed", attempt.attempt_id)
    assert len(lms.issued) == 1, "the token is kept and used again"
    assert payload["status"] == "suspicious" and payload["reviewed_by"] == "grace@example.org"
    assert len(payload["comments"]) == len(FLAGS)
    for comment, (kind, start_s, end_s, _) in zip(payload["comments"], sorted(FLAGS, key=lambda f: f[1]), strict=True):
        assert kind.replace("_", " ") in comment["comment"]
        assert (
            comment["start"] <= start_s
            and comment["stop"] >= end_s
            and comment["stop"] - comment["start"] < end_s - start_s + 2
        )
        assert comment["duration"] == comment["stop"] - comment["start"]
        assert all(isinstance(comment[k], int) for k in ("start", "stop", "duration"))
    assert payload["comments"][0]["status"] == "confirmed" and "seen on camera" in payload["comments"][0]["comment"]
    assert {c["status"] for c in payload["comments"][1:]} == {"dismissed"}
    read = as_edx_reads_it(payload)
    assert read["review_status"] == "Suspicious"
    assert read["reviewed_by"] == "grace@example.org" and len(read["comments"]) == len(FLAGS)


def test_a_failing_lms_is_retried_with_backoff_and_our_own_reviewers_are_not_named(
    context: AppContext, sample: SampleSession, lms: Lms
) -> None:
    attempt = edx_attempt(context, sample, lms)
    outbox = sender(context, max_attempts=4, backoff_s=30)
    outbox.send_due()  # ready
    finalise(attempt, f"staff-{uuid.uuid4().hex[:6]}", Outcome.CLEAN, edx_user=False)
    lms.fail_reviewed = 1
    started = utcnow()
    assert outbox.send_due(started) == 1
    (failed,) = deliveries(context, attempt.session_id, REVIEWED_EVENT)
    assert failed.state == "pending" and failed.attempts == 1 and failed.last_status == 500
    assert failed.next_attempt_at >= started + timedelta(seconds=30), "backed off"
    assert failed.channel == CHANNEL and failed.ref == attempt.client_pk
    assert outbox.send_due(started + timedelta(seconds=10)) == 0, "not before its backoff"
    # The LMS now refuses the token it issued: the delivery drops it, and the next attempt fetches another.
    lms.reject_tokens = True
    assert outbox.send_due(started + timedelta(minutes=1)) == 1
    (refused,) = deliveries(context, attempt.session_id, REVIEWED_EVENT)
    assert (
        refused.state == "pending"
        and refused.last_status == 401
        and "a new one is fetched" in (refused.last_error or "")
    )
    assert outbox.send_due(started + timedelta(minutes=5)) == 1
    (delivered,) = deliveries(context, attempt.session_id, REVIEWED_EVENT)
    assert delivered.state == "delivered" and delivered.attempts == 3 and len(lms.issued) == 2
    payload = lms.calls[-1][2]
    assert payload["status"] == "passed" and "reviewed_by" not in payload
    assert as_edx_reads_it(payload)["review_status"] in ("Clean", None)


def test_a_wrong_lms_secret_ends_as_a_recorded_failure(context: AppContext, sample: SampleSession, lms: Lms) -> None:
    attempt = edx_attempt(context, sample, lms, lms_secret="not-what-the-lms-gave-us")
    assert sender(context, max_attempts=5, backoff_s=0.1).send_due() == 1
    (ready,) = deliveries(context, attempt.session_id, READY_EVENT)
    assert ready.state == "failed" and ready.attempts == 1 and ready.last_status == 401
    assert f"refused our OAuth client {LMS_CLIENT_ID}" in (ready.last_error or "")
    assert lms.calls == [] and lms.refused == ["token"]
