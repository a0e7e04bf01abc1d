"""Pure geometry for the gaze path: crop transforms, head pose and eye-in-head gaze.

Head pose is read from the 3D face mesh itself rather than from solvePnP against a canonical
face: the MediaPipe wheel does not ship its canonical face model, and the landmark model already
predicts depth (z, in the same units as x). Two face axes (eye line, chin-to-forehead) and their
normal give yaw, pitch and roll. Absolute zeros differ from face to face by a few degrees, which
the per-session calibration removes; what matters here is that the angles move monotonically and
roughly in degrees as the head turns.

Conventions, all in image terms so a reviewer can check them on a frame:
- ``yaw`` > 0: the nose points toward image right.
- ``pitch`` > 0: the nose points up.
- ``roll`` > 0: the head tilts clockwise in the image.
- eye gaze ``h`` > 0: the irises sit toward image right inside the eyes; ``v`` > 0: up.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EYE_CORNERS",
    "crop_to_image",
    "eye_gaze",
    "eye_openness",
    "head_pose",
    "map_points",
    "pitch_from_keypoints",
    "rect_from_points",
    "yaw_from_keypoints",
]

FloatArray = NDArray[np.float64]

# Face mesh indices. "right"/"left" are the subject's; the subject's right eye is on the image left.
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER = 33, 133, 362, 263
RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, LEFT_EYE_UPPER, LEFT_EYE_LOWER = 159, 145, 386, 374
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
RIGHT_CHEEK, LEFT_CHEEK = 234, 454
EYE_CORNERS = ((RIGHT_EYE_OUTER, RIGHT_EYE_INNER), (LEFT_EYE_INNER, LEFT_EYE_OUTER))
"""Per eye, (image-left corner, image-right corner) for an upright face."""


def crop_to_image(centre: tuple[float, float], size: float, angle: float) -> FloatArray:
    """2x3 affine taking unit crop coordinates (0..1, 0..1) to image pixels.

    The crop is a square of side ``size`` pixels centred on ``centre`` whose x axis is rotated by
    ``angle`` radians (image y down, so positive is clockwise on screen).
    """
    c, s = math.cos(angle) * size, math.sin(angle) * size  # the crop's x axis is (c, s), its y axis (-s, c)
    ox = float(centre[0]) - 0.5 * (c - s)
    oy = float(centre[1]) - 0.5 * (s + c)
    return np.array([[c, -s, ox], [s, c, oy]], np.float64)


def map_points(affine: FloatArray, points_unit: FloatArray) -> FloatArray:
    """Apply ``crop_to_image`` to (K, 2) unit crop coordinates."""
    return np.asarray(points_unit @ affine[:, :2].T + affine[:, 2], np.float64)


def rect_from_points(points: FloatArray, a: int, b: int, scale: float) -> tuple[tuple[float, float], float, float]:
    """Square ROI around ``points`` (K, 2), rotated along ``points[a] -> points[b]``, scaled by ``scale``.

    The extent is measured in the rotated frame so a tilted head gets a tight, not inflated, box.
    Runs on every tracked frame: scalars are plain floats (numpy's per-call overhead on them was most
    of the cost), only the projection of the K points is vectorised.
    """
    ax, ay = points[a].tolist()
    bx, by = points[b].tolist()
    angle = math.atan2(by - ay, bx - ax)
    c, s = math.cos(angle), math.sin(angle)
    x, y = points[:, 0], points[:, 1]
    u = x * c + y * s
    v = y * c - x * s
    u_lo, u_hi, v_lo, v_hi = float(u.min()), float(u.max()), float(v.min()), float(v.max())
    mu, mv = (u_lo + u_hi) / 2, (v_lo + v_hi) / 2
    size = max(u_hi - u_lo, v_hi - v_lo) * scale
    return (mu * c - mv * s, mu * s + mv * c), size, angle


def head_pose(landmarks: FloatArray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from (468, 3) mesh landmarks in image pixels (z = depth, away > 0)."""
    # Plain floats: on 3-vectors numpy's per-call overhead is most of the cost (once per frame).
    lm = np.asarray(landmarks, np.float64)
    rx, ry, rz = ((lm[RIGHT_EYE_OUTER] + lm[RIGHT_CHEEK]) / 2).tolist()
    lx, ly, lz = ((lm[LEFT_EYE_OUTER] + lm[LEFT_CHEEK]) / 2).tolist()
    fx, fy, fz = lm[FOREHEAD].tolist()
    cx, cy, cz = lm[CHIN].tolist()
    ax, ay, az = lx - rx, ly - ry, lz - rz
    norm = math.sqrt(ax * ax + ay * ay + az * az) + 1e-12
    ax, ay, az = ax / norm, ay / norm, az / norm
    ux, uy, uz = fx - cx, fy - cy, fz - cz
    along = ux * ax + uy * ay + uz * az
    ux, uy, uz = ux - ax * along, uy - ay * along, uz - az * along
    norm = math.sqrt(ux * ux + uy * uy + uz * uz) + 1e-12
    ux, uy, uz = ux / norm, uy / norm, uz / norm
    # normal = x_axis x up: points toward the camera (z < 0) for a frontal face
    nx, ny, nz = ay * uz - az * uy, az * ux - ax * uz, ax * uy - ay * ux
    yaw = math.degrees(math.atan2(nx, -nz))
    pitch = math.degrees(math.atan2(-ny, math.hypot(nx, nz)))
    roll = math.degrees(math.atan2(ay, ax))
    return yaw, pitch, roll


def eye_gaze(landmarks: FloatArray, irises: FloatArray) -> tuple[float, float]:
    """Mean iris position inside both eyes: (h, v), 0 when centred, in eye widths.

    ``irises`` is (2, 2): the iris centre of the image-left eye, then of the image-right eye.
    ``h`` is the offset along the corner-to-corner line from its midpoint (the data README's
    ``r - 0.5``); ``v`` is the offset perpendicular to it, positive up.
    """
    lm = np.asarray(landmarks, np.float64)[:, :2]
    hs, vs = [], []
    for (a, b), iris in zip(EYE_CORNERS, np.asarray(irises, np.float64), strict=True):
        axis = lm[b] - lm[a]
        width2 = float(np.dot(axis, axis))
        if width2 <= 1e-9:
            return float("nan"), float("nan")
        rel = iris - (lm[a] + lm[b]) / 2
        hs.append(float(np.dot(rel, axis)) / width2)
        normal_up = np.array([axis[1], -axis[0]])
        vs.append(float(np.dot(rel, normal_up)) / width2)
    return float(np.mean(hs)), float(np.mean(vs))


def eye_openness(landmarks: FloatArray) -> float:
    """Mean lid gap over eye width for both eyes (about 0.25-0.35 open, below 0.1 closed)."""
    lm = np.asarray(landmarks, np.float64)
    ratios: list[float] = []
    for (a, b), (up, low) in zip(
        EYE_CORNERS, ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_UPPER, LEFT_EYE_LOWER)), strict=True
    ):
        (ax, ay), (bx, by), (ux, uy), (lx, ly) = lm[[a, b, up, low], :2].tolist()
        width = math.hypot(bx - ax, by - ay)
        ratios.append(math.hypot(ux - lx, uy - ly) / width if width > 1e-9 else float("nan"))
    return (ratios[0] + ratios[1]) / 2


def yaw_from_keypoints(keypoints: FloatArray, depth_ratio: float = 0.8) -> float:
    """Coarse yaw in degrees from BlazeFace keypoints, for faces the mesh cannot read.

    Near profile the face mesh loses confidence while BlazeFace still finds the face and its
    nose. The nose tip's offset from the eyes' midpoint along the eye line, in eye distances,
    grows with the turn; ``atan2(offset, depth_ratio)`` maps it to degrees. ``depth_ratio`` 0.8
    matched the mesh yaw to a median 3.9 degrees on CMU stills where both were available.
    """
    kp = np.asarray(keypoints, np.float64)
    axis = kp[1] - kp[0]
    norm2 = float(np.dot(axis, axis))
    if norm2 <= 1e-9:
        return float("nan")
    offset = float(np.dot(kp[2] - (kp[0] + kp[1]) / 2, axis)) / norm2
    return float(np.degrees(np.arctan2(offset, depth_ratio)))


def pitch_from_keypoints(keypoints: FloatArray) -> float:
    """Coarse pitch in degrees (> 0 up) from BlazeFace keypoints, for faces the mesh cannot read.

    Tilting the head up brings the nose tip toward the eye line: the ratio r of the nose's and
    the mouth's distances below the eye line drops from ~0.5 (level) to ~0.3 (CMU "up").
    ``pitch = 50 - 104 r`` is a straight-line fit to the mesh pitch on CMU stills where both were
    available (correlation 0.84); it is coarse, and only used where the mesh failed.
    """
    kp = np.asarray(keypoints, np.float64)
    axis = kp[1] - kp[0]
    norm = float(np.linalg.norm(axis))
    if norm <= 1e-9:
        return float("nan")
    down = np.array([-axis[1], axis[0]]) / norm
    mid = (kp[0] + kp[1]) / 2
    mouth = float(np.dot(kp[3] - mid, down))
    if mouth <= 1e-9:
        return float("nan")
    return float(50.0 - 104.0 * float(np.dot(kp[2] - mid, down)) / mouth)
