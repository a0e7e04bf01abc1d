"""The reviewer sees who is on camera: the enrolment photo beside a frame that matched, in words, and audited."""

from __future__ import annotations

import cv2
import numpy as np
from sqlalchemy import select

from core.tables import AuditEvent
from tests.review_ui.conftest import World, enrol_with_identity


def jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((90, 80, 3), 140, np.uint8))[1].tobytes()


def test_the_session_page_shows_the_enrolment_and_what_matched(world: World) -> None:
    enrol_with_identity(world, "a", jpeg())
    reviewer = world.browser("reviewer_a")
    page = reviewer.page(f"/review/sessions/{world.sessions['a']}").text
    assert "8 of 9 face samples match the enrolment" in page and "not that it is live" in page
    photo = reviewer.get(f"/review/sessions/{world.sessions['a']}/enrolment")
    assert (
        photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg" and photo.content[:2] == b"\xff\xd8"
    )
    assert reviewer.get(f"/review/sessions/{world.sessions['a']}/identity/reference").status_code == 200
    with world.context.db() as db:
        actions = db.scalars(select(AuditEvent.action).where(AuditEvent.session_id == world.sessions["a"])).all()
    assert "view_enrolment" in actions


def test_another_tenants_enrolment_is_not_found(world: World) -> None:
    enrol_with_identity(world, "a", jpeg())
    outsider = world.browser("reviewer_b")
    assert outsider.get(f"/review/sessions/{world.sessions['a']}/enrolment").status_code == 404


def test_without_an_enrolment_the_page_says_so(world: World) -> None:
    page = world.browser("reviewer_a").page(f"/review/sessions/{world.sessions['a']}").text
    assert "No enrolment photo or clip for this candidate" in page
