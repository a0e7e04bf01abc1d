"""Frame quality flags on real images and their degraded copies."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from detectors import FrameQualityDetector, QualityConfig

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


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"analysis_width": 8}, "analysis_width"), ({"dark_luma": -1.0}, "dark_luma")],
)
def test_config_validation(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        QualityConfig(**kwargs)
