"""Pure geometry: tables of cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.geometry import crop_to_image, map_points, pitch_from_keypoints, rect_from_points, yaw_from_keypoints


def keypoints(nose_x: float, eye_dx: float = 1.0, nose_y: float = 0.5, mouth_y: float = 1.0) -> np.ndarray:
    kp = np.zeros((6, 2))
    kp[0] = (-eye_dx / 2, 0.0)
    kp[1] = (eye_dx / 2, 0.0)
    kp[2] = (nose_x, nose_y)
    kp[3] = (0.0, mouth_y)
    return kp


@pytest.mark.parametrize(
    ("nose_x", "eye_dx", "expected"),
    [
        (0.0, 1.0, 0.0),
        (0.8, 1.0, 45.0),
        (-0.8, 1.0, -45.0),
        (0.4, 0.5, 45.0),  # scale-free
        (0.0, 0.0, math.nan),  # degenerate eyes
    ],
)
def test_yaw_from_keypoints(nose_x: float, eye_dx: float, expected: float) -> None:
    got = yaw_from_keypoints(keypoints(nose_x, eye_dx))
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("angle", [0.0, 0.3, -1.0])
def test_crop_affine_maps_centre_and_corners(angle: float) -> None:
    affine = crop_to_image((100.0, 50.0), 40.0, angle)
    centre, corner = map_points(affine, np.array([[0.5, 0.5], [1.0, 0.5]]))
    np.testing.assert_allclose(centre, [100, 50], atol=1e-9)
    np.testing.assert_allclose(corner - centre, [20 * math.cos(angle), 20 * math.sin(angle)], atol=1e-9)


def test_rect_from_points_is_tight_when_rotated() -> None:
    pts = np.array([[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]])
    centre, size, angle = rect_from_points(pts, 0, 1, 1.0)
    assert angle == pytest.approx(math.pi / 4)
    assert size == pytest.approx(math.hypot(10, 10))
    np.testing.assert_allclose(centre, [5, 5], atol=1e-9)


@pytest.mark.parametrize(
    ("nose_y", "mouth_y", "expected"),
    [
        (0.5, 1.0, -2.0),  # level: nose half way from eyes to mouth
        (0.3, 1.0, 18.8),  # tilted up: nose near the eye line
        (0.6, 2.0, 18.8),  # scale-free
        (0.5, 0.0, math.nan),  # degenerate
    ],
)
def test_pitch_from_keypoints(nose_y: float, mouth_y: float, expected: float) -> None:
    got = pitch_from_keypoints(keypoints(0.0, 1.0, nose_y, mouth_y))
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=0.1)
