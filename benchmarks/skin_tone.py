"""Skin tone measured from skin pixels: the Individual Typology Angle (ITA°) and its six standard bands.

ITA = arctan((L* - 50) / b*) x 180 / pi, from the CIELAB lightness L* and the yellow-blue b* of skin
(Chardon, Cretois and Hourseau, 1991). Bands (Del Bino and Bernerd, 2013): very light > 55°, light
41-55°, intermediate 28-41°, tan 10-28°, brown -30-10°, dark < -30°. It is a colorimetric measure of the
skin in the picture, not of a person's ethnicity, and the lighting moves it: so it is measured on each
person's normally lit frames only, as the median over them, and the darkened, backlit and low-contrast
variants are judged against the group measured there.

Which pixels: the two cheeks, as polygons of face-mesh landmarks (away from the eyes, brows, lips and
beard line), with the darkest and brightest fifth of their pixels dropped (shadow, specular highlight).
A picture with no colour (greyscale, b* and a* near 0) has no ITA: ``None``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

LEFT_CHEEK = (117, 118, 101, 36, 205, 187, 123)
RIGHT_CHEEK = (346, 347, 330, 266, 425, 411, 352)
BANDS = (
    (55.0, "very light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
    (-math.inf, "dark"),
)
MIN_CHROMA = 3.0
"""Below this median sqrt(a*^2 + b*^2) the picture is taken to have no colour."""


def skin_pixels(frame: NDArray[np.uint8], landmarks: NDArray[np.float64]) -> NDArray[np.uint8]:
    """(N, 3) RGB pixels of both cheeks."""
    mask = np.zeros(frame.shape[:2], np.uint8)
    for polygon in (LEFT_CHEEK, RIGHT_CHEEK):
        points = np.round(landmarks[list(polygon), :2]).astype(np.int32)
        cv2.fillPoly(mask, [points], 255)
    return frame[mask > 0]


def ita_degrees(pixels: NDArray[np.uint8]) -> float | None:
    """The ITA of RGB skin pixels (median L* and b* of the middle three fifths by lightness); None without
    enough pixels or without colour."""
    if len(pixels) < 30:
        return None
    lab = cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    lightness = lab[:, 0]
    low, high = np.percentile(lightness, [20, 80])
    kept = lab[(lightness >= low) & (lightness <= high)]
    if len(kept) < 20:
        return None
    l_star, a_star, b_star = (float(np.median(kept[:, k])) for k in range(3))
    if math.hypot(a_star, b_star) < MIN_CHROMA:
        return None
    return math.degrees(math.atan2(l_star - 50.0, b_star))


def band(ita: float | None) -> str:
    if ita is None:
        return "no colour"
    return next(name for floor, name in BANDS if ita > floor)
