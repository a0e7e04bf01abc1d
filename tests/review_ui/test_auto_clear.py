"""Auto-clear (issue 20): the policy's fields, which sessions the sweep may clear, the QC draw, what a system
decision leaves behind (outcome, version, audit, webhook), idempotence, the `proctor serve` thread and the CLI
command. On SQLite and PostgreSQL; assertions are on the sessions each test made (the PostgreSQL database is shared).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core.context import AppContext
from core.db import utcnow
from core.exam_policy import AutoClear, ExamPolicy, PolicyInvalid
from core.states import SessionState
from core.tables import (
    AuditEvent,
    Exam,
    ExamSession,
    FlagSegment,
    Job,
    ReviewOutcome,
    SessionReview,
    User,
    WebhookDelivery,
)
from core.tenants import add_tenant
from core.vocabulary import FlagSource, JobKind, JobState, Outcome, Role
from proctor.cli import app
from review_ui.accounts import add_user
from review_ui.auto_clear import (
    AUTO_CLEAR_ACTOR,
    AutoClearer,
    auto_clear_sweep,
    decide,
    qc_draw,
    qc_draw_key,
)
from review_ui.policies import form_values, policy_from_form
from review_ui.webhooks import new_secret
from tests.review_ui.conftest import PASSWORD, World, set_webhook

KEY = qc_draw_key(b"k" * 32)
NOW = datetime(2026, 12, 12, 9, tzinfo=UTC)


# -- the policy's fields --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sent", "field", "allowed"),
    [
        ({"auto_clear": {"enabled": "yes"}}, "auto_clear.enabled", "true or false"),
        ({"auto_clear": {"max_risk": 1.5}}, "auto_clear.max_risk", "within [0, 1]"),
        ({"auto_clear": {"qc_sample_rate": -0.1}}, "auto_clear.qc_sample_rate", "within [0, 1]"),
        ({"auto_clear": {"qc_sample_rate": True}}, "auto_clear.qc_sample_rate", "within [0, 1]"),
        ({"auto_clear": {"threshold": 0.2}}, "auto_clear", "allowed: enabled, max_risk, qc_sample_rate"),
        ({"auto_clear": 1}, "auto_clear", "must be an object"),
    ],
)
def test_an_auto_clear_that_cannot_be_applied_names_its_field(sent: dict[str, Any], field: str, allowed: str) -> None:
    with pytest.raises(PolicyInvalid) as refused:
        ExamPolicy.from_json(sent)
    assert refused.value.field == field and allowed in str(refused.value)


def test_auto_clear_is_off_by_default_and_round_trips_through_json_and_the_form() -> None:
    assert ExamPolicy().auto_clear == AutoClear(enabled=False, max_risk=0.0, qc_sample_rate=0.1)
    policy = ExamPolicy.from_json({"auto_clear": {"enabled": True, "max_risk": 0.2}})
    assert policy.auto_clear == AutoClear(True, 0.2, 0.1)
    assert ExamPolicy.from_json(policy.to_json()) == policy
    assert ExamPolicy.from_json({"sensitivity": 1}).auto_clear == AutoClear(), "a stored policy without it: off"
    form = form_values(policy)
    assert (form["auto_clear.enabled"], form["auto_clear.max_risk"], form["auto_clear.qc_sample_rate"]) == (
        "on", "0.2", "0.1",
    )  # fmt: skip
    changed = form | {"auto_clear.enabled": "", "auto_clear.qc_sample_rate": "0.25"}
    assert policy_from_form(changed, policy).auto_clear == AutoClear(False, 0.2, 0.25)
    with pytest.raises(PolicyInvalid) as refused:
        policy_from_form(form | {"auto_clear.max_risk": "2"}, policy)
    assert refused.value.field == "auto-clear: highest risk" and "from 0 to 1" in str(refused.value)


# -- the draw -------------------------------------------------------------------------------------------------
def test_the_qc_draw_is_reproducible_keyed_and_near_its_rate() -> None:
    ids = [uuid.UUID(int=n).hex for n in range(2000)]  # the shape of our session ids, in a fixed sequence
    draws = [qc_draw(KEY, i) for i in ids]
    assert draws == [qc_draw(KEY, i) for i in ids], "a re-run draws the same"
    assert all(0.0 <= d < 1.0 for d in draws)
    other = qc_draw_key(b"another deployment's key!!!!!!!")
    assert sum(qc_draw(other, i) == d for i, d in zip(ids, draws, strict=True)) == 0, "the key changes every draw"
    for rate in (0.05, 0.1, 0.5):
        sampled = sum(d < rate for d in draws)
        bound = 4 * math.sqrt(2000 * rate * (1 - rate))  # 4 standard deviations of Binomial(2000, rate)
        assert abs(sampled - 2000 * rate) < bound, (rate, sampled)


# -- the sweep ------------------------------------------------------------------------------------------------
@dataclass
class Place:
    context: AppContext
    tenant_id: str

    def exam(self, auto_clear: dict[str, Any] | None, **policy: Any) -> str:
        """A new exam of the tenant, with auto-clear set as given (None: left out, so off)."""
        body = {**policy, **({"auto_clear": auto_clear} if auto_clear is not None else {})}
        with self.context.db() as db:
            exam = Exam(
                tenant_id=self.tenant_id, external_id=f"exam-{uuid.uuid4().hex[:8]}",
                policy=ExamPolicy.from_json(body).to_json(),
            )  # fmt: skip
            db.add(exam)
            db.commit()
            return exam.id

    def session(
        self,
        exam_id: str,
        *,
        risk: float | None = 0.0,
        flags: tuple[str, ...] = (),
        source: FlagSource = FlagSource.DETECTOR,
        state: SessionState = SessionState.PROCESSED,
    ) -> str:
        """A session of the exam as processing leaves it: state, risk and flags."""
        with self.context.db() as db:
            session = ExamSession(
                tenant_id=self.tenant_id, exam_id=exam_id, candidate_id=f"c-{uuid.uuid4().hex[:6]}",
                attempt_id=uuid.uuid4().hex[:8], started_at=NOW - timedelta(hours=2), state=state.value,
                duration_s=600.0, risk_score=risk, processed_at=NOW - timedelta(hours=1),
            )  # fmt: skip
            db.add(session)
            db.flush()
            for n, kind in enumerate(flags):
                db.add(
                    FlagSegment(
                        session_id=session.id, kind=kind, start_ms=n * 10_000, end_ms=n * 10_000 + 3000, score=0.9,
                        peak_ms=n * 10_000 + 1000, evidence_keys=[], pipeline_version="1", source=source.value,
                    )
                )  # fmt: skip
            db.commit()
            return session.id


@pytest.fixture
def place(context: AppContext) -> Place:
    with context.db() as db:
        tenant = add_tenant(db, f"plat-ac-{uuid.uuid4().hex[:6]}", "auto-clear platform")
        db.commit()
        return Place(context, tenant.id)


ON = {"enabled": True, "max_risk": 0.3, "qc_sample_rate": 0.0}


def claimed(place: Place, session_id: str) -> str:
    with place.context.db() as db:
        user = add_user(db, f"rev-{uuid.uuid4().hex[:8]}", PASSWORD, Role.REVIEWER)
        session = db.get(ExamSession, session_id)
        assert session is not None
        session.claimed_by, session.claim_expires_at = user.id, utcnow() + timedelta(minutes=30)
        db.add(session.move_to(SessionState.IN_REVIEW))
        db.commit()
    return session_id


def reviewed(place: Place, session_id: str) -> str:
    with place.context.db() as db:
        session = db.get(ExamSession, session_id)
        assert session is not None
        db.add(session.move_to(SessionState.IN_REVIEW))
        db.add(session.move_to(SessionState.REVIEWED))
        db.add(SessionReview(session_id=session_id, outcome="Suspicious", status="final", note="seen"))
        db.commit()
    return session_id


def rescore_queued(place: Place, session_id: str) -> str:
    with place.context.db() as db:
        db.add(Job(session_id=session_id, kind=JobKind.RESCORE.value, state=JobState.QUEUED.value))
        db.commit()
    return session_id


Case = Callable[[Place], str]  # makes a session, returns its id
CASES: dict[str, tuple[Case, bool]] = {  # the session it makes, and whether the sweep clears it
    "nothing found": (lambda p: p.session(p.exam(ON)), True),
    "risk at the highest": (lambda p: p.session(p.exam(ON), risk=0.3), True),
    "risk above the highest": (lambda p: p.session(p.exam(ON), risk=0.31), False),
    "no risk score": (lambda p: p.session(p.exam(ON), risk=None), False),
    "a flag that puts the risk above the highest": (
        lambda p: p.session(p.exam(ON), flags=("no_face",), risk=0.5),
        False,
    ),
    "only a weak flag, within the highest risk": (lambda p: p.session(p.exam(ON), flags=("no_face",), risk=0.2), True),
    "a flag of a kind turned off": (
        lambda p: p.session(p.exam(ON, kinds={"looking_away": {"enabled": False}}), flags=("looking_away",)),
        True,
    ),
    "a flag a reviewer added": (lambda p: p.session(p.exam(ON), flags=("phone",), source=FlagSource.REVIEWER), False),
    "auto-clear off": (lambda p: p.session(p.exam({**ON, "enabled": False})), False),
    "no auto-clear in the policy": (lambda p: p.session(p.exam(None)), False),
    "claimed": (lambda p: claimed(p, p.session(p.exam(ON))), False),
    "already reviewed": (lambda p: reviewed(p, p.session(p.exam(ON))), False),
    "a re-scoring queued": (lambda p: rescore_queued(p, p.session(p.exam(ON))), False),
    "still processing": (lambda p: p.session(p.exam(ON), state=SessionState.PROCESSING), False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_sweep_clears_only_what_the_detectors_found_nothing_in(place: Place, case: str) -> None:
    make, clears = CASES[case]
    session_id = make(place)
    with place.context.db() as db:
        before = db.get(ExamSession, session_id)
        assert before is not None
        state_before = before.state
    auto_clear_sweep(place.context.db, NOW, KEY)
    with place.context.db() as db:
        session = db.get(ExamSession, session_id)
        review = db.get(SessionReview, session_id)
        assert session is not None
        if clears:
            assert session.state == SessionState.REVIEWED.value and review is not None
            assert (review.outcome, review.status, review.decided_by_system, review.reviewer_id) == (
                Outcome.CLEAN.value, "final", AUTO_CLEAR_ACTOR, None,
            )  # fmt: skip
        else:
            assert session.state == state_before and not session.qc_sample
            assert review is None or review.decided_by_system is None


def test_a_system_clear_is_a_version_audited_with_its_grounds_and_the_platform_is_told(place: Place) -> None:
    set_webhook(place.context, place.tenant_id, "https://platform.example/hook", new_secret())
    session_id = place.session(place.exam(ON), risk=0.1)
    tally = auto_clear_sweep(place.context.db, NOW, KEY)
    assert tally.cleared >= 1 and tally.exams >= 1
    with place.context.db() as db:
        version = db.scalar(select(ReviewOutcome).where(ReviewOutcome.session_id == session_id))
        assert version is not None
        assert (version.version, version.outcome, version.decided_by, version.decided_by_system) == (
            1, "Clean", None, AUTO_CLEAR_ACTOR,
        )  # fmt: skip
        trail = db.scalars(select(AuditEvent).where(AuditEvent.session_id == session_id).order_by(AuditEvent.seq)).all()
        assert [(e.actor, e.action) for e in trail] == [
            (AUTO_CLEAR_ACTOR, "outcome"),
            (AUTO_CLEAR_ACTOR, "review_final"),
        ]
        grounds = trail[0].detail["grounds"]
        assert grounds["max_risk"] == 0.3 and grounds["qc_sample_rate"] == 0.0 and grounds["risk_score"] == 0.1
        assert grounds["draw"] == qc_draw(KEY, session_id) and "no_face" in grounds["kinds_flagged"]
        delivery = db.scalar(select(WebhookDelivery).where(WebhookDelivery.session_id == session_id))
        assert delivery is not None and delivery.event == "review.final"
    review = json.loads(delivery.body)["review"]
    assert review["final"] and review["outcome"] == "Clean" and review["version"] == 1
    assert review["history"][0]["decided_by"] is None
    assert review["history"][0]["decided_by_system"] == AUTO_CLEAR_ACTOR


def test_a_qc_sample_goes_to_reviewers_audited_with_its_draw_and_a_second_sweep_does_nothing(place: Place) -> None:
    exam_id = place.exam({**ON, "qc_sample_rate": 0.5})
    ids = [place.session(exam_id) for _ in range(12)]
    first = auto_clear_sweep(place.context.db, NOW, KEY)
    expected = {i: qc_draw(KEY, i) < 0.5 for i in ids}
    assert first.qc_sampled >= sum(expected.values()) and first.cleared >= len(ids) - sum(expected.values())

    def trails() -> dict[str, list[tuple[str, str]]]:
        with place.context.db() as db:
            rows = db.execute(
                select(AuditEvent.session_id, AuditEvent.actor, AuditEvent.action)
                .where(AuditEvent.session_id.in_(ids))
                .order_by(AuditEvent.seq)
            ).all()
        return {i: [(actor, action) for sid, actor, action in rows if sid == i] for i in ids}

    decided = trails()
    with place.context.db() as db:
        for session_id, sample in expected.items():
            session = db.get(ExamSession, session_id)
            assert session is not None and session.qc_sample is sample
            assert session.state == (SessionState.PROCESSED if sample else SessionState.REVIEWED).value
            actions = ["auto_clear_qc_sample"] if sample else ["outcome", "review_final"]
            assert decided[session_id] == [(AUTO_CLEAR_ACTOR, action) for action in actions]
        sampled = next(i for i, s in expected.items() if s)
        entry = db.scalar(select(AuditEvent).where(AuditEvent.session_id == sampled))
        assert entry is not None and entry.detail["grounds"]["draw"] == qc_draw(KEY, sampled) < 0.5
    again = auto_clear_sweep(place.context.db, NOW + timedelta(minutes=1), KEY)
    assert (again.cleared, again.qc_sampled) == (0, 0), "each session is decided once"
    assert trails() == decided


def test_a_session_claimed_since_it_was_listed_is_left_to_its_reviewer(place: Place) -> None:
    exam_id = place.exam(ON)
    session_id = place.session(exam_id)
    claimed(place, session_id)  # between the sweep's listing and its taking
    with place.context.db() as db:
        exam = db.get(Exam, exam_id)
        assert exam is not None
        assert decide(db, session_id, ExamPolicy.from_json(exam.policy), NOW, KEY) is None
    with place.context.db() as db:
        assert db.get(SessionReview, session_id) is None
        assert db.scalars(select(AuditEvent.action).where(AuditEvent.session_id == session_id)).all() == []


def test_the_sweep_thread_of_proctor_serve_runs_until_stopped(place: Place) -> None:
    session_id = place.session(place.exam(ON))
    clearer = AutoClearer(place.context.db, KEY, interval_s=0.1)
    thread = threading.Thread(target=clearer.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with place.context.db() as db:
                if db.get(SessionReview, session_id) is not None:
                    break
            time.sleep(0.1)
    finally:
        clearer.stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    with place.context.db() as db:
        review = db.get(SessionReview, session_id)
        assert review is not None and review.decided_by_system == AUTO_CLEAR_ACTOR


def test_the_cli_runs_one_sweep_and_prints_the_tally(place: Place) -> None:
    session_id = place.session(place.exam(ON))
    env = {
        "PROCTOR_DATA_DIR": str(place.context.settings.data_dir),
        "PROCTOR_DATABASE_URL": place.context.settings.resolved_database_url,
    }
    result = CliRunner().invoke(app, ["review", "auto-clear"], env=env)
    assert result.exit_code == 0, result.output
    assert "auto-clear:" in result.output and "cleared" in result.output and "QC samples" in result.output
    with place.context.db() as db:
        review = db.get(SessionReview, session_id)
        assert review is not None and review.decided_by_system == AUTO_CLEAR_ACTOR


# -- what people see --------------------------------------------------------------------------------------------
def test_the_session_page_and_the_platform_say_auto_cleared_and_the_api_carries_the_policy(world: World) -> None:
    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {world.keys['a']}"}) as platform:
        exam = f"exam-ac-{uuid.uuid4().hex[:6]}"
        put = platform.put(f"/v1/exams/{exam}/policy", json={"auto_clear": {"enabled": True, "qc_sample_rate": 0}})
        assert put.status_code == 200, put.text
        assert put.json()["policy"]["auto_clear"] == {"enabled": True, "max_risk": 0.0, "qc_sample_rate": 0.0}
        assert platform.get(f"/v1/exams/{exam}/policy").json()["policy"]["auto_clear"]["enabled"] is True
        refused = platform.put(f"/v1/exams/{exam}/policy", json={"auto_clear": {"max_risk": 2}})
        assert refused.status_code == 422
        place = Place(world.context, world.tenant_ids["a"])
        with world.context.db() as db:
            exam_id = db.scalar(select(Exam.id).where(Exam.external_id == exam, Exam.tenant_id == place.tenant_id))
        assert exam_id is not None
        session_id = place.session(exam_id)
        auto_clear_sweep(world.context.db, utcnow(), KEY)
        review = platform.get(f"/v1/sessions/{session_id}/review").json()
    assert review["outcome"] == "Clean" and review["history"][0]["decided_by_system"] == AUTO_CLEAR_ACTOR
    page = world.browser("reviewer_a").page(f"/review/sessions/{session_id}").text
    assert '<span id="decided-by">auto-cleared (system)</span>' in page
    assert "auto-cleared (system)" in page.split('id="outcome-history"')[1]
    with world.context.db() as db:
        assert db.scalar(select(User.id).where(User.username == AUTO_CLEAR_ACTOR)) is None, "no user stands for it"
