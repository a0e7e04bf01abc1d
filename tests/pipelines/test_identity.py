"""Who is on camera: person_changed against the session's first face, identity_mismatch against the enrolment."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from core.vocabulary import FlagKind
from detectors import AwayConfig, FaceAnalysisDetector, FrameBatch, FrameQualityDetector, Signals
from detectors.face_analysis import DESCRIPTOR_COLUMNS
from detectors.identity import FaceEmbedder, template
from pipelines.analysis import segment_session
from pipelines.identity import IdentityRule, identity_evidence
from pipelines.segments import ExamPolicy
from tests.detectors.conftest import ASTRONAUT_BOX, GRACE_BOX, Image, astronaut, face_crop, grace, paste

__all__ = ["astronaut", "grace"]  # fixtures shared with the detector tests

STEP = 200


def synthetic(people: list[tuple[float, int, int]], every: int = 15) -> Signals:
    """(seconds, person, placement x) takes, one descriptor every ``every`` frames; a person is a fixed vector."""
    rng = np.random.default_rng(0)
    base = {p: rng.normal(0, 0.1, 128) for p in {p for _, p, _ in people}}
    rows, xs = [], []
    for seconds, person, x in people:
        n = round(seconds * 1000 / STEP)
        rows += [base[person] + rng.normal(0, 0.01, 128) for _ in range(n)]
        xs += [x] * n
    n = len(rows)
    matrix = np.array(rows)
    matrix[np.arange(n) % every != 0] = np.nan
    cols = {c: matrix[:, k] for k, c in enumerate(DESCRIPTOR_COLUMNS)}
    cols |= {
        "face_count": np.ones(n),
        "gaze_face_x_px": np.array(xs, float),
        "gaze_face_y_px": np.full(n, 240.0),
        "gaze_face_size_px": np.full(n, 200.0),
    }
    return Signals(np.arange(n, dtype=np.int64) * STEP, cols)


def test_the_same_person_throughout_raises_nothing() -> None:
    who = identity_evidence(synthetic([(60, 0, 320)]), None, IdentityRule())
    assert np.nanmax(who.person_changed) == 0 and who.samples == 20 and who.reference_ms == 0


def test_a_takeover_is_evidence_from_the_switch_on() -> None:
    who = identity_evidence(synthetic([(30, 0, 320), (30, 1, 420)]), None, IdentityRule())
    assert np.nanmax(who.person_changed[:150]) == 0
    assert np.all(who.person_changed[150:] == 1), "from the first frame of the new stretch, not the first sample"


def test_a_takeover_the_tracker_slid_across_is_evidence_from_the_cut_on() -> None:
    """The face moves 0.125 face sizes at the cut, under a jump: the descriptors split the stretch there, so the
    new person is evidence from the cut, not only from their first sample 2 s later. Where the face does not
    move at all, the evidence starts at that sample and the frames before it keep the first person's."""
    who = identity_evidence(synthetic([(31, 0, 320), (29, 1, 345)]), None, IdentityRule())
    assert np.nanmax(who.person_changed[:155]) == 0
    assert np.all(who.person_changed[155:] == 1)
    still = identity_evidence(synthetic([(31, 0, 320), (29, 1, 320)]), None, IdentityRule())
    assert np.nanmax(still.person_changed[:165]) == 0
    assert np.all(still.person_changed[165:] == 1)


def flaggable(signals: Signals) -> dict[str, NDArray[np.float64]]:
    """The signals' columns, plus the frame quality and head pose columns the flags read: a lit, readable face
    at the screen, and no second face placed."""
    n = len(signals)
    cols = dict(signals.columns)
    cols |= {c: np.zeros(n) for c in ("covered", "too_dark", "head_yaw_deg", "head_pitch_deg")}
    cols |= {c: np.full(n, np.nan) for c in ("eye_gaze_h", "eye_gaze_v", *(f"second_face_{a}_px" for a in "xy"))}
    cols["second_face_size_px"] = np.full(n, np.nan)
    return cols


def test_a_helper_beside_the_candidate_is_two_people_not_a_person_change() -> None:
    """For 10 s a helper sits beside the candidate and the tracker holds the helper's face: those descriptors are
    someone else's, but two people in view are multiple_faces. Before, the same 10 s were also person_changed."""
    signals = synthetic([(30, 0, 320), (10, 1, 320), (20, 0, 320)], every=5)
    n = len(signals)
    beside = (np.arange(n) >= 150) & (np.arange(n) < 200)
    cols = flaggable(signals)
    cols["face_count"] = np.where(beside, 2.0, 1.0)
    crowded = Signals(signals.timestamps_ms, cols)
    who = identity_evidence(crowded, None, IdentityRule())
    assert np.isnan(who.person_changed[beside]).all() and np.nanmax(who.person_changed) == 0
    assert who.samples == 50, "the ten descriptors taken beside the helper decide nothing"
    segments, _ = segment_session(crowded, ExamPolicy(), AwayConfig(), duration_ms=n * STEP)
    assert [(s.kind, s.start_ms, s.end_ms) for s in segments] == [(FlagKind.MULTIPLE_FACES, 30_000, 40_000)]


def test_the_sessions_reference_is_a_face_seen_alone() -> None:
    """The session opens with a helper's face tracked beside the candidate's: the reference is the first face seen
    alone, so the candidate is not a person change once the helper leaves."""
    signals = synthetic([(10, 1, 320), (50, 0, 320)])
    cols = dict(signals.columns)
    cols["face_count"] = np.where(np.arange(len(signals)) < 50, 2.0, 1.0)
    who = identity_evidence(Signals(signals.timestamps_ms, cols), None, IdentityRule())
    assert who.reference_ms == 60 * STEP and np.nanmax(who.person_changed) == 0


def test_without_descriptors_nothing_is_decided() -> None:
    n = 10
    bare = Signals(np.arange(n, dtype=np.int64) * STEP, {"face_count": np.ones(n)})
    who = identity_evidence(bare, None, IdentityRule())
    assert np.isnan(who.person_changed).all() and np.isnan(who.identity_mismatch).all() and who.samples == 0


def test_a_picture_left_alone_is_no_one_to_identify() -> None:
    """The candidate leaves a framed picture of someone else behind: the seat is empty (no_face), and the picture's
    face is neither a person change nor an identity mismatch."""
    signals = synthetic([(30, 0, 320), (20, 1, 540)], every=5)
    n, seated = len(signals), 150
    left = np.arange(n) >= seated
    picture = {"x": 540.0, "y": 120.0, "size": 50.0}
    cols = flaggable(signals)
    for axis in ("x", "y", "size"):
        cols[f"face_{axis}_px"] = np.where(left, picture[axis], {"x": 320.0, "y": 240.0, "size": 200.0}[axis])
        cols[f"picture_face_{axis}_px"] = np.where(left, np.nan, picture[axis])  # framed while the candidate sat
    cols["gaze_face_x_px"] = np.where(left, np.nan, cols["gaze_face_x_px"])
    both = Signals(signals.timestamps_ms, cols)
    assert np.all(identity_evidence(both, None, IdentityRule()).person_changed[seated:] == 1), "its face is another"
    segments, _ = segment_session(both, ExamPolicy(), AwayConfig(), duration_ms=n * STEP)
    assert {s.kind for s in segments} == {FlagKind.NO_FACE}


# -- real faces --------------------------------------------------------------------------------------------
def portrait(image: Image, box: tuple[float, float, float, float]) -> Image:
    canvas = np.full((480, 640, 3), 120, np.uint8)
    paste(canvas, face_crop(image, box), 170, 60, 300)
    return canvas


def analysed(frames: list[Image]) -> Signals:
    analysis, quality = FaceAnalysisDetector(), FrameQualityDetector()
    parts = []
    for start in range(0, len(frames), 16):
        chunk = frames[start : start + 16]
        ts = np.arange(start, start + len(chunk), dtype=np.int64) * STEP
        batch = FrameBatch(np.stack(chunk), ts)
        parts.append(Signals.merge([analysis(batch), quality(batch)]))
    return Signals.concat(parts)


@pytest.fixture(scope="module")
def enrolled(astronaut: Image) -> NDArray[np.float32]:
    """The astronaut's enrolment template, from a different framing of her photo."""
    analysis = FaceAnalysisDetector()
    frame = np.ascontiguousarray(astronaut)
    _, mains = analysis.gaze.run(FrameBatch(frame[None], np.zeros(1, np.int64)))
    assert mains[0].points is not None
    embedder = FaceEmbedder()
    return template(embedder.embed(embedder.chip(frame, mains[0].points)[None]))


def kinds_and_starts(signals: Signals, enrolment: NDArray[np.float32] | None) -> list[tuple[FlagKind, float]]:
    segments, _ = segment_session(
        signals, ExamPolicy(), AwayConfig(), duration_ms=len(signals) * STEP, enrolment=enrolment
    )
    return [
        (s.kind, s.start_ms / 1000) for s in segments if s.kind in (FlagKind.PERSON_CHANGED, FlagKind.IDENTITY_MISMATCH)
    ]


def test_the_enrolled_person_throughout_raises_no_identity_flag(
    astronaut: Image, enrolled: NDArray[np.float32]
) -> None:
    signals = analysed([portrait(astronaut, ASTRONAUT_BOX)] * 100)
    assert kinds_and_starts(signals, enrolled) == []


def test_another_real_person_taking_over_is_flagged_at_the_switch(
    astronaut: Image, grace: Image, enrolled: NDArray[np.float32]
) -> None:
    frames = [portrait(astronaut, ASTRONAUT_BOX)] * 75 + [np.full((480, 640, 3), 120, np.uint8)] * 10
    frames += [portrait(grace, GRACE_BOX)] * 75  # 15 s of the candidate, 2 s empty, 15 s of someone else
    signals = analysed(frames)
    flags = kinds_and_starts(signals, enrolled)
    assert sorted(k.value for k, _ in flags) == ["identity_mismatch", "person_changed"]
    assert all(start == pytest.approx(17.0, abs=0.4) for _, start in flags)
    assert kinds_and_starts(signals, None) == [(FlagKind.PERSON_CHANGED, pytest.approx(17.0, abs=0.4))]
