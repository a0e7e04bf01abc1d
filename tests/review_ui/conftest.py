"""A review world: the API + review UI over real HTTP, real S3, two tenants with processed sessions, users.

Sessions are uploaded through the real ingest API (a real WebM recording built from real face photos, plus
its exam event log), then given flagged segments and an evidence frame as the pipeline would leave them.
Running the detectors here would only slow the review tests down; the pipeline's own tests cover that.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request

from core.context import AppContext
from core.db import utcnow
from core.states import SessionState
from core.tables import ExamSession, FlagSegment, Tenant
from core.tenants import add_tenant, issue_api_key
from core.vocabulary import Role
from ingest.client import IngestClient, upload_session
from pipelines.thumbnails import keyframe_thumbnails
from proctor.local_server import BackgroundServer
from proctor.samples import SampleSession, build_sample_session
from proctor.wiring import delivery_policy, server_app
from review_ui.accounts import add_user, assign
from review_ui.webhook_destinations import DestinationRules
from review_ui.webhooks import DeliveryPolicy, seal_secret
from storage.keys import SessionPrefix

PASSWORD = "correct horse battery"
SAMPLE_S = 24.0
# (kind, start_s, end_s, score), as the pipeline would flag the 24 s sample's script (see proctor.samples)
FLAGS = (("no_face", 4.8, 6.8, 0.9), ("multiple_faces", 11.2, 13.2, 1.0), ("looking_away", 16.8, 18.4, 0.8))
# What the pipeline stores to explain a no_face flag (`pipelines.evidence.explain_presence`)
NO_FACE_DETAILS = {
    "frames": 10, "frames_showing": 9, "frames_unknown": 1, "enter": 0.5, "min_duration_s": 3.0,
    "trace": [[4800, 1.0], [5600, None], [6000, 0.9], [6800, 1.0]],
}  # fmt: skip


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    """A short VP8 WebM (what browsers record, and what Chromium always plays) with its event log."""
    return build_sample_session(tmp_path_factory.mktemp("review-sample"), duration_s=SAMPLE_S, codec="vp8")


@dataclass
class World:
    url: str
    context: AppContext
    sessions: dict[str, str] = field(default_factory=dict)  # tenant label -> session id
    keys: dict[str, str] = field(default_factory=dict)  # tenant label -> API key
    tenant_ids: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # label -> username

    def browser(self, label: str) -> Browser:
        """An HTTP client signed in as the user `label` (reviewer_a, reviewer_a2, reviewer_b, officer_a, admin)."""
        client = Browser(self.url)
        client.login(self.users[label], PASSWORD)
        return client


class Browser(httpx.Client):
    """httpx with the cookie jar of one signed-in user, and the CSRF token of the last page it read."""

    def __init__(self, url: str) -> None:
        super().__init__(base_url=url, follow_redirects=False, timeout=30)
        self.csrf = ""

    def page(self, path: str) -> httpx.Response:
        response = self.get(path)
        found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
        if found:
            self.csrf = found[1]
        return response

    def login(self, username: str, password: str) -> httpx.Response:
        self.page("/review/login")
        response = self.post(
            "/review/login", data={"username": username, "password": password, "csrf_token": self.csrf}
        )
        self.csrf = ""  # the login form's token; a signed-in session has its own
        return response

    def submit(self, path: str, **fields: str) -> httpx.Response:
        """POST a form with this session's CSRF token, asking for JSON."""
        if not self.csrf:
            self.page("/review/queue")
        return self.post(path, data={"csrf_token": self.csrf, **fields}, headers={"Accept": "application/json"})


def add_processed_session(world: World, label: str, sample: SampleSession, exam: str) -> str:
    """Upload the sample through the API, then leave it as the pipeline would: processed, with flags."""
    with IngestClient(world.url, world.keys[label]) as client:
        out = upload_session(
            client,
            webcam=sample.video_path,
            events=sample.events_path,
            exam_id=exam,
            candidate_id=f"cand-{uuid.uuid4().hex[:6]}",
            attempt_id=uuid.uuid4().hex[:8],
        )
    session_id: str = out["id"]
    store = world.context.store
    with world.context.db() as db:
        session = db.get(ExamSession, session_id)
        assert session is not None and session.state == SessionState.QUEUED.value
        results = SessionPrefix(session.tenant.slug, session.exam.external_id, session.id).key("results", "r1") + "/"
        for kind, start_s, end_s, score in FLAGS:
            key = f"{results}evidence/{kind}-{int(start_s * 1000)}.jpg"
            frame = np.full((120, 160, 3), 80, dtype=np.uint8)
            store.put_bytes(key, cv2.imencode(".jpg", frame)[1].tobytes(), content_type="image/jpeg")
            db.add(
                FlagSegment(
                    session_id=session.id,
                    kind=kind,
                    start_ms=int(start_s * 1000),
                    end_ms=int(end_s * 1000),
                    score=score,
                    peak_ms=int(start_s * 1000) + 500,
                    evidence_keys=[key],
                    detector_versions={"face_presence": "test"},
                    pipeline_version="1",
                    details=NO_FACE_DETAILS if kind == "no_face" else None,
                )
            )
        for state in (SessionState.PROCESSING, SessionState.PROCESSED):
            db.add(session.move_to(state))
        session.risk_score, session.review_priority, session.results_prefix = 0.8, "high", results
        with sample.video_path.open("rb") as recording:  # the thumbnail strip, as the pipeline makes it
            made = keyframe_thumbnails(recording, SAMPLE_S)
        assert made is not None
        store.put_bytes(f"{results}thumbnails.jpg", made[0], content_type="image/jpeg")
        session.thumbnails = {"key": f"{results}thumbnails.jpg", **made[1].to_json()}
        session.processed_at = utcnow()
        db.commit()
    return session_id


@pytest.fixture
def world(context: AppContext, sample: SampleSession) -> Iterator[World]:
    with BackgroundServer(server_app(context)) as url:
        world = World(url, context)
        suffix = uuid.uuid4().hex[:6]
        with context.db() as db:
            for label in ("a", "b"):
                tenant = add_tenant(db, f"plat-{label}-{suffix}", f"platform {label}")
                world.tenant_ids[label] = tenant.id
                world.keys[label] = issue_api_key(db, tenant)
            db.commit()
        for label in ("a", "b"):
            world.sessions[label] = add_processed_session(world, label, sample, exam=f"exam-{label}")
        with context.db() as db:
            slugs = {label: db.get(Tenant, tid).slug for label, tid in world.tenant_ids.items()}  # type: ignore[union-attr]
            for label, role, tenant in (
                ("reviewer_a", Role.REVIEWER, "a"),
                ("reviewer_a2", Role.REVIEWER, "a"),
                ("reviewer_b", Role.REVIEWER, "b"),
                ("officer_a", Role.OFFICER, "a"),
                ("admin", Role.ADMIN, None),
            ):
                username = f"{label}-{suffix}"
                user = add_user(db, username, PASSWORD, role)
                if tenant:
                    assign(db, user, slugs[tenant])
                world.users[label] = username
            db.commit()
        yield world


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A real HTTP endpoint that records what it receives: (url, [(headers, body), ...])."""
    received: list[tuple[dict[str, str], bytes]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        received.append((dict(request.headers), await request.body()))
        return {"ok": True}

    with BackgroundServer(app) as url:
        yield f"{url}/hook", received


def webhook_policy(context: AppContext, **overrides: Any) -> DeliveryPolicy:
    """The sender's policy as `proctor serve` wires it (refusing the S3 server the tests run), admitting the
    tests' receivers on 127.0.0.1 (PROCTOR_WEBHOOK_ALLOW_PRIVATE)."""
    policy = delivery_policy(context.settings)
    destinations = DestinationRules(allow_private=True, refused_endpoints=(context.location.endpoint,))
    return replace(policy, destinations=destinations, **overrides)


def set_webhook(context: AppContext, tenant_id: str, url: str, secret: str) -> None:
    """What `proctor tenants webhook` stores: the URL, and the secret sealed under the deployment's key."""
    with context.db() as db:
        tenant = db.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.webhook_url = url
        tenant.webhook_secret = seal_secret(delivery_policy(context.settings).secrets, tenant_id, secret)
        db.commit()


def enrol_with_identity(world: World, label: str, image: bytes) -> str:
    """Give session ``label``'s candidate an enrolment photo (stored in S3) and the session an identity summary
    and reference frame, as the pipeline and the enrolment upload would; returns the enrolment's object key."""
    from core.enrolments import CandidatePrefix
    from core.tables import CandidateEnrolment

    store = world.context.store
    with world.context.db() as db:
        session = db.get(ExamSession, world.sessions[label])
        assert session is not None
        key = CandidatePrefix(session.tenant.slug, session.candidate_id).prefix + f"enrolment/{session.id}-photo"
        store.put_bytes(key, image, content_type="image/jpeg")
        reference = f"{session.results_prefix}evidence/identity-reference-1000.jpg"
        store.put_bytes(reference, image, content_type="image/jpeg")
        db.add(
            CandidateEnrolment(
                tenant_id=session.tenant_id, candidate_id=session.candidate_id, session_id=session.id,
                kind="enrolment_photo", object_key=key, descriptor=[0.0] * 128, frames=1, face_size_px=120.0,
                brightness=120.0, sharpness=0.1,
            )
        )  # fmt: skip
        session.identity = {
            "samples": 9, "reference_s": 1.0, "matches_reference": 8, "matches_enrolment": 8,
            "median_distance_to_enrolment": 0.41, "enrolled": True, "reference_frame": reference,
        }  # fmt: skip
        db.commit()
        return key
