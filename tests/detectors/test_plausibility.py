"""Not every face is a candidate: doubtful faces must pass the joint plausibility check."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import FaceAnalysisDetector, FacePresenceConfig, FacePresenceDetector, FrameBatch
from detectors.plausibility import PlausibilityRule, colourful

from .conftest import ASTRONAUT_BOX, Image, face_crop, paste


def scene(patch: Image, size: int = 300) -> Image:
    canvas = np.full((480, 640, 3), 115, np.uint8)
    paste(canvas, patch, 170, 80, size)
    return canvas


def darkened(image: Image, gamma: float) -> Image:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 / gamma), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(lut[image])


@pytest.fixture(scope="module")
def cat() -> Image:
    from skimage import data  # the demo's cat: skimage chelsea, which BlazeFace scores 0.52-0.57 as a face

    return np.ascontiguousarray(data.chelsea())


@pytest.fixture(scope="module")
def analysis() -> FaceAnalysisDetector:
    return FaceAnalysisDetector(identity=None)


def frames_of(image: Image, n: int = 10) -> FrameBatch:
    return FrameBatch(np.stack([image] * n), np.arange(n, dtype=np.int64) * 200)


def test_a_cat_is_not_a_candidate(cat: Image, presence: FacePresenceDetector, analysis: FaceAnalysisDetector) -> None:
    assert len(presence.faces(cat)) == 0
    signals = analysis(frames_of(cat))
    assert signals["face_count"].tolist() == [0] * 10
    assert np.isnan(signals["head_yaw_deg"]).all(), "no head pose from an animal"


@pytest.mark.parametrize("gamma", [1.0, 0.4, 0.25])
def test_a_real_face_in_poor_light_still_counts(astronaut: Image, analysis: FaceAnalysisDetector, gamma: float) -> None:
    frame = darkened(scene(face_crop(astronaut, ASTRONAUT_BOX)), gamma)
    assert analysis(frames_of(frame))["face_count"].tolist() == [1] * 10


@pytest.mark.parametrize("gamma", [1.0, 0.4, 0.25])
def test_a_real_face_passes_when_every_tracked_face_is_judged(astronaut: Image, gamma: float) -> None:
    """The tracked face is judged below 0.8 (dogs scored 0.71-0.74); a real face must pass at any score."""
    judge_all = FacePresenceConfig(plausibility=PlausibilityRule(tracked_face_below=1.01))
    frame = darkened(scene(face_crop(astronaut, ASTRONAUT_BOX)), gamma)
    signals = FaceAnalysisDetector(presence=judge_all, identity=None)(frames_of(frame))
    assert signals["face_count"].tolist() == [1] * 10


def test_grey_pictures_are_not_judged(astronaut: Image) -> None:
    grey = np.repeat(astronaut.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    box = np.array(ASTRONAUT_BOX, np.float32)
    assert colourful(astronaut, box, 8.0) and not colourful(grey, box, 8.0)


@pytest.mark.parametrize(
    ("mesh", "full", "short", "person"),
    [
        (0.9, 0.95, 0.9, True),  # a clear face
        (0.02, 0.8, 0.55, True),  # a dark face: the mesh gives up, the full-range model still finds it
        (0.3, 0.0, 0.56, False),  # the cat: short range only, a middling mesh score
        (0.75, 0.0, 0.6, True),  # short range only, but the mesh is sure
    ],
)
def test_the_joint_rule(mesh: float, full: float, short: float, person: bool) -> None:
    rule = PlausibilityRule()
    assert (rule.score(mesh, full, short) >= rule.threshold) is person
