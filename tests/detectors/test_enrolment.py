"""Enrolment checks on real faces: each refusal code from a real photo made unusable the way it happens
(no one in view, two people, too far, too dark, out of focus), a good photo and a clip accepted."""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from detectors.enrolment import (
    REFUSAL_CODES,
    EnrolmentChecker,
    EnrolmentConfig,
    EnrolmentRefused,
    check_enrolment,
    chip_sharpness,
    region_brightness,
)
from detectors.identity import descriptor_distance
from detectors.runtime import RuntimeConfig

Image = NDArray[np.uint8]


@pytest.fixture(scope="module")
def checker() -> EnrolmentChecker:
    return EnrolmentChecker(runtime=RuntimeConfig(device="cpu"))


def wall(width: int = 640, height: int = 480) -> Image:
    """A lit, faceless wall: a soft colour gradient."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.dstack([90 + 80 * xx / width, 100 + 60 * yy / height, np.full((height, width), 120.0)]).astype(np.uint8)


def darkened(image: Image, gamma: float = 8.0) -> Image:
    return np.ascontiguousarray((255 * (image / 255.0) ** gamma).astype(np.uint8))


def blurred(image: Image, sigma: float = 3.0) -> Image:
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), np.uint8)


def shrunk(image: Image, factor: float = 0.5) -> Image:
    h, w = image.shape[:2]
    return np.asarray(cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA), np.uint8)


REFUSED: dict[str, Callable[[Image], Image]] = {
    "enrolment_no_face": lambda _: wall(),
    "enrolment_multiple_faces": lambda a: np.ascontiguousarray(np.hstack([a, a])),
    "enrolment_face_too_small": shrunk,  # astronaut's 105 px face at 53 px
    "enrolment_too_dark": darkened,  # the face's mean luma from 151 to 25
    "enrolment_blurred": blurred,  # sigma 3: sharpness 0.010
}


def test_every_refusal_code_has_a_case() -> None:
    assert set(REFUSED) == set(REFUSAL_CODES)


@pytest.mark.parametrize("code", sorted(REFUSED))
def test_each_unusable_photo_is_refused_with_its_code_and_what_to_do(
    checker: EnrolmentChecker, astronaut: Image, code: str
) -> None:
    with pytest.raises(EnrolmentRefused) as refused:
        checker([REFUSED[code](astronaut)])
    assert refused.value.code == code
    message = refused.value.message
    assert "enrolment photo" in message and ":" in message  # what is wrong, then what to do
    assert any(verb in message for verb in ("take", "move", "show", "light", "hold")), message


def test_a_black_frame_is_too_dark_not_faceless(checker: EnrolmentChecker) -> None:
    with pytest.raises(EnrolmentRefused) as refused:
        checker([np.zeros((480, 640, 3), np.uint8)])
    assert refused.value.code == "enrolment_too_dark" and "no face can be seen" in refused.value.message


@pytest.mark.parametrize("name", ["astronaut", "grace"])
def test_a_good_photo_gives_a_template_and_its_figures(
    checker: EnrolmentChecker, request: pytest.FixtureRequest, name: str
) -> None:
    image: Image = request.getfixturevalue(name)
    face = checker([image])
    assert face.descriptor.shape == (128,) and face.descriptor.dtype == np.float32
    assert face.frames_used == face.frames_checked == 1
    assert face.face_size_px > 80 and face.brightness > 100 and face.sharpness > 0.1
    # The template is the person's: the same photo slightly shrunk stays close, the other person does not.
    again = checker([shrunk(image, 0.9)])
    assert float(descriptor_distance(face.descriptor, again.descriptor)) < 0.15


def test_the_two_people_are_told_apart(checker: EnrolmentChecker, astronaut: Image, grace: Image) -> None:
    assert float(descriptor_distance(checker([astronaut]).descriptor, checker([grace]).descriptor)) > 0.6


def test_a_clip_averages_its_usable_frames_and_drops_blurred_ones(checker: EnrolmentChecker, astronaut: Image) -> None:
    frames = [astronaut, shrunk(astronaut, 0.95), blurred(astronaut), astronaut, blurred(astronaut), astronaut]
    face = checker(frames)
    assert (face.frames_used, face.frames_checked) == (4, 6)
    assert float(descriptor_distance(face.descriptor, checker([astronaut]).descriptor)) < 0.1


def test_a_clip_refuses_with_the_commonest_reason_when_too_few_frames_are_usable(
    checker: EnrolmentChecker, astronaut: Image
) -> None:
    with pytest.raises(EnrolmentRefused) as refused:
        checker([astronaut, blurred(astronaut), blurred(astronaut), darkened(astronaut)])
    assert refused.value.code == "enrolment_blurred"
    assert "1 of the clip's frames were usable, 3 are needed" in refused.value.message


def test_a_clip_with_a_second_person_anywhere_is_refused(
    checker: EnrolmentChecker, astronaut: Image, grace: Image
) -> None:
    side_by_side = np.ascontiguousarray(np.hstack([astronaut, cv2.resize(grace, (437, 512))]))
    with pytest.raises(EnrolmentRefused, match="2 faces") as crowded:
        checker([astronaut, astronaut, side_by_side, astronaut])
    assert crowded.value.code == "enrolment_multiple_faces"
    # One at a time, but two people: their descriptors are not one person's.
    with pytest.raises(EnrolmentRefused, match="more than one person") as swapped:
        checker([astronaut] * 3 + [np.ascontiguousarray(cv2.resize(grace, (512, 512)))] * 3)
    assert swapped.value.code == "enrolment_multiple_faces"


def test_a_long_clip_is_sampled_down_to_max_frames(checker: EnrolmentChecker, astronaut: Image) -> None:
    assert checker([astronaut] * 20).frames_checked == checker.config.max_frames


def test_check_enrolment_takes_a_config_or_a_checker_not_two_different_ones(checker: EnrolmentChecker) -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        check_enrolment([], checker=checker)
    with pytest.raises(ValueError, match="not two different ones"):
        check_enrolment([wall()], EnrolmentConfig(min_face_px=10), checker=checker)


@pytest.mark.parametrize(
    "field, value",
    [("min_face_px", -1.0), ("min_sharpness", float("inf")), ("other_face_share", 0.0), ("min_frames", 0)],
)
def test_config_refuses_nonsense(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        EnrolmentConfig(**{field: value})  # type: ignore[arg-type]


def test_the_measures_themselves() -> None:
    grey = np.zeros((100, 100), np.uint8)
    grey[20:40, 30:60] = 200
    assert region_brightness(grey, np.array([30, 20, 60, 40], np.float32)) == 200.0
    assert math.isnan(region_brightness(grey, np.array([-50, -50, -10, -10], np.float32)))  # outside the frame
    flat = np.full((150, 150, 3), 128, np.uint8)
    assert chip_sharpness(flat) == 0.0
    noise = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    assert chip_sharpness(noise) > chip_sharpness(blurred(noise, 2.0)) * 10
    # Contrast does not count: the same detail at half the contrast reads the same.
    assert chip_sharpness((noise // 2).astype(np.uint8)) == pytest.approx(chip_sharpness(noise), rel=0.05)
