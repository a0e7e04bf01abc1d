"""Frame quality flags on real images and their degraded copies."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from detectors import FrameQualityDetector, QualityConfig
from detectors.quality import picture_area

from .conftest import Image, batch_of


def gamma(img: Image, g: float) -> Image:
    return np.clip(255.0 * (img / 255.0) ** (1.0 / g), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("make", "covered", "dark", "blurry"),
    [
        (lambda img: img, 0, 0, 0),
        (lambda img: np.zeros_like(img), 1, 1, 0),
        (lambda img: np.full_like(img, 128), 1, 0, 0),
        (lambda img: (img * 0.15).astype(np.uint8), 0, 1, 0),
        (lambda img: gamma(img, 0.15), 0, 1, 0),
        (lambda img: cv2.GaussianBlur(img, (0, 0), 12), 0, 0, 1),
    ],
    ids=["original", "black", "uniform_grey", "very_dark", "gamma_0.15", "heavy_blur"],
)
def test_quality_flags(astronaut: Image, make: Any, covered: int, dark: int, blurry: int) -> None:
    s = FrameQualityDetector()(batch_of(make(astronaut)))
    assert (s["covered"][0], s["too_dark"][0], s["too_blurry"][0]) == (covered, dark, blurry)


def test_quality_does_not_depend_on_resolution(grace: Image) -> None:
    small = FrameQualityDetector()(batch_of(grace))
    big = FrameQualityDetector()(batch_of(cv2.resize(grace, None, fx=2, fy=2)))
    assert big["brightness"][0] == pytest.approx(small["brightness"][0], rel=0.02)
    assert big["sharpness"][0] == pytest.approx(small["sharpness"][0], rel=0.25)


def boxed(img: Image, width: int, height: int) -> Image:
    """``img`` shrunk to fit ``width`` x ``height`` and centred on black, as a player letterboxes or pillarboxes it."""
    scale = min(width / img.shape[1], height / img.shape[0])
    w, h = round(img.shape[1] * scale), round(img.shape[0] * scale)
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    out[top : top + h, left : left + w] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return out


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (640, 1280)], ids=["pillarboxed", "letterboxed"])
def test_black_bars_around_a_lit_picture_are_not_a_dark_room(astronaut: Image, width: int, height: int) -> None:
    """A portrait phone video in a 16:9 recording (or a landscape one in a portrait recording) is mostly black bars:
    the frame's mean luma is under the dark threshold, the picture's is not, and nor is it a covered lens."""
    picture = astronaut[:, 96:416] if width > height else cv2.resize(astronaut, (512, 256))
    portrait = (picture * 0.8).astype(np.uint8)  # a room lit as indoors, not as a studio
    frame = boxed(portrait, width, height)
    assert float(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).mean()) < QualityConfig().dark_luma
    s = FrameQualityDetector()(batch_of(frame))
    assert (s["covered"][0], s["too_dark"][0]) == (0, 0)
    assert s["brightness"][0] == pytest.approx(FrameQualityDetector()(batch_of(portrait))["brightness"][0], abs=3)


def test_a_dark_room_black_at_one_edge_is_still_dark(astronaut: Image) -> None:
    """Black only at one edge (a shadow, a dark doorway) is not a bar: the whole frame is measured (the lit part
    alone would not read as dark)."""
    dark = (astronaut * 0.4).astype(np.uint8)
    dark[:, :200] = 0
    grey = cv2.cvtColor(cv2.resize(dark, (160, 160), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    assert picture_area(grey, QualityConfig()) == (slice(0, 160), slice(0, 160))
    assert float(cv2.cvtColor(dark[:, 200:], cv2.COLOR_RGB2GRAY).mean()) >= QualityConfig().dark_luma
    s = FrameQualityDetector()(batch_of(dark))
    assert s["too_dark"][0] == 1


@pytest.mark.parametrize(
    ("left", "right", "top", "bottom", "inside"),
    [
        # The picture's first line beside a bar is left out (on a shrunk copy it mixes the bar's black in).
        (30, 32, 0, 0, (slice(0, 100), slice(31, 127))),  # bars 2 columns apart: a centred picture, rounded
        (30, 33, 0, 0, (slice(0, 100), slice(0, 160))),  # 3 apart: not letterboxing
        (60, 60, 0, 0, (slice(0, 100), slice(61, 99))),  # a picture of exactly a quarter of the width
        (61, 61, 0, 0, (slice(0, 100), slice(0, 160))),  # less than a quarter: a black frame with a lit stripe
        (20, 20, 10, 10, (slice(11, 89), slice(21, 139))),  # boxed on all four sides
    ],
)
def test_the_picture_inside_its_bars(left: int, right: int, top: int, bottom: int, inside: tuple[slice, slice]) -> None:
    grey = np.zeros((100, 160), np.uint8)
    grey[top : 100 - bottom, left : 160 - right] = 120
    assert picture_area(grey, QualityConfig()) == inside


def test_a_black_frame_has_no_bars() -> None:
    assert picture_area(np.zeros((100, 160), np.uint8), QualityConfig()) == (slice(0, 100), slice(0, 160))


def lit_cover(rgb: tuple[float, float, float], falloff: float, tilt: float, noise: float, seed: int = 0) -> Image:
    """Something over the lens in a lit room, as a camera sees it: far out of focus, its colour shaded across the
    frame (a vignette ``falloff`` from the centre, ``tilt`` from top to bottom) under sensor noise."""
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float64)
    r2 = ((xs - 320) ** 2 + (ys - 240) ** 2) / (320**2 + 240**2)
    shade = (1.0 - falloff * r2) * (1.0 + tilt * (0.5 - ys / 479))
    picture = np.array(rgb) * shade[:, :, None] + np.random.default_rng(seed).normal(0, noise, (480, 640, 3))
    return np.asarray(np.clip(picture, 0, 255), np.uint8)


def test_a_bright_cover_in_a_boxed_recording_is_covered() -> None:
    """A sticky note over the lens of a 4:3 camera pillarboxed to 16:9: where the picture meets the bars, the shrunk
    copy mixes black into the note's first column, an edge sharp enough to pass for a scene's detail."""
    note = lit_cover((215.0, 204.0, 133.0), 0.25, 0.0, 2.0)
    frame = cv2.copyMakeBorder(note, 0, 0, 107, 107, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    s = FrameQualityDetector()(batch_of(np.asarray(frame, np.uint8)))
    assert (s["covered"][0], s["too_dark"][0]) == (1, 0)
    assert s["contrast"][0] < 2 * QualityConfig().covered_contrast


def test_a_covered_lens_in_a_boxed_recording_is_covered(astronaut: Image) -> None:
    """A hand over the lens of a pillarboxed recording: the picture inside the bars is dark and uniform."""
    frame = boxed(astronaut[:, 96:416], 1280, 720)
    inside = frame[:, 416:864]
    inside[:] = (60, 25, 25)  # lit above the bars' black, so the bars are found and the picture alone is measured
    s = FrameQualityDetector()(batch_of(frame))
    assert s["covered"][0] == 1


@pytest.mark.parametrize(
    ("rgb", "falloff", "tilt", "noise"),
    [
        ((95.0, 40.0, 27.0), 0.55, 0.0, 4.0),  # a fingertip: light through the skin, falling off to the edges
        ((128.0, 93.0, 75.0), 0.15, 0.45, 3.0),  # a palm lit from above
        ((215.0, 204.0, 133.0), 0.25, 0.0, 2.0),  # a sticky note
    ],
    ids=["finger", "palm", "sticky_note"],
)
def test_a_cover_in_a_lit_room_is_covered(
    rgb: tuple[float, float, float], falloff: float, tilt: float, noise: float
) -> None:
    """Neither black nor (the palm and the note) uniform: its luma spreads as widely as a room's. But no detail
    is left in it."""
    s = FrameQualityDetector()(batch_of(lit_cover(rgb, falloff, tilt, noise)))
    assert (s["covered"][0], s["too_dark"][0]) == (1, 0)
    assert s["detail"][0] < QualityConfig().covered_detail


def test_a_shaded_cover_is_not_uniform() -> None:
    """What the contrast threshold alone missed: a palm lit from above spreads its luma past it."""
    s = FrameQualityDetector()(batch_of(lit_cover((128.0, 93.0, 75.0), 0.15, 0.45, 3.0)))
    assert s["contrast"][0] > 2 * QualityConfig().covered_contrast
    assert s["covered"][0] == 1


@pytest.mark.parametrize("blur", [6, 20], ids=["blurred", "very_blurred"])
def test_an_unfocused_room_keeps_its_detail(astronaut: Image, blur: int) -> None:
    """A camera out of focus still shows the shapes of the scene: too blurry, not covered."""
    s = FrameQualityDetector()(batch_of(cv2.GaussianBlur(astronaut, (0, 0), blur)))
    assert s["covered"][0] == 0
    assert s["detail"][0] > 2 * QualityConfig().covered_detail


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"analysis_width": 8}, "analysis_width"),
        ({"dark_luma": -1.0}, "dark_luma"),
        ({"covered_detail": -0.1}, "covered_detail"),
        ({"min_picture_share": 0.0}, "min_picture_share"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        QualityConfig(**kwargs)
