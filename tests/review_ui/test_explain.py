"""Why a looking-away flag fired, as the reviewer reads it on the session page."""

from __future__ import annotations

import html

from sqlalchemy import update

from core.tables import FlagSegment
from review_ui.explain import flag_why, looking_away_why
from tests.review_ui.conftest import World

DETAILS = {
    "driver": "head yaw",
    "reference": {"yaw_deg": 5.0, "pitch_deg": -3.0, "gaze_h": 0.01, "calibrated": True, "since_s": 72.0},
    "tolerances": {"yaw_deg": 25.0, "pitch_deg": 20.0, "gaze_h": 0.09},
    "peak_score": 1.6,
    "face_lost_frames": 0,
    "trace": [[20_000, 1.1], [20_400, 1.6], [20_800, 1.2], [21_200, 0.8]],
}


def test_the_explanation_names_the_reference_the_tolerances_and_the_driver() -> None:
    why = looking_away_why(DETAILS)
    assert why is not None
    assert "head yaw went furthest, peaking at 1.6 tolerances" in why.text
    assert "calibrated from 1:12: yaw +5°, pitch -3°" in why.text and "yaw 25.0°" in why.text
    assert why.points.startswith("0.0,") and why.points.split()[-1].startswith("100.0,")
    assert 0 < why.threshold_y < 24


def test_an_uncalibrated_placement_says_so() -> None:
    why = looking_away_why(DETAILS | {"reference": DETAILS["reference"] | {"calibrated": False}})
    assert why is not None and "looking into the camera" in why.text


def test_a_head_that_could_not_be_read_says_so() -> None:
    details = DETAILS | {"driver": "head unreadable", "peak_score": None, "head_unreadable_frames": 15}
    why = looking_away_why(details | {"trace": []})
    assert why is not None and why.points == ""
    assert why.text.startswith("The face stayed in view, but its head pose could not be read on 15 frames")
    assert "calibrated from 1:12" in why.text


def test_flags_without_details_have_no_explanation() -> None:
    assert looking_away_why(None) is None and looking_away_why({}) is None


def test_the_session_page_shows_why(world: World) -> None:
    with world.context.db() as db:
        db.execute(
            update(FlagSegment)
            .where(FlagSegment.session_id == world.sessions["a"], FlagSegment.kind == "looking_away")
            .values(details=DETAILS)
        )
        db.commit()
    page = html.unescape(world.browser("reviewer_a").page(f"/review/sessions/{world.sessions['a']}").text)
    assert "head yaw went furthest" in page and 'class="why-chart"' in page


def test_a_presence_flag_says_how_many_frames_showed_it_and_the_rule() -> None:
    details = {
        "frames": 20, "frames_showing": 18, "frames_unknown": 2, "enter": 0.5, "min_duration_s": 1.5,
        "trace": [[0, 1.0], [500, None], [1000, 0.2], [2000, 1.0]],
    }  # fmt: skip
    why = flag_why("multiple_faces", details)
    assert why is not None
    assert why.text.startswith("18 of 20 sampled frames showed more than one face (2 could not tell")
    assert "1.5 s" in why.text and why.threshold_y == 12.0  # half-way up the 24-high chart
    assert why.points == "0.0,0.0 50.0,19.2 100.0,0.0"
    assert flag_why("no_face", None) is None and flag_why("person_changed", details) is None
