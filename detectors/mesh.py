"""The face mesh model: a rotated square ROI in, 468 3D landmarks and a face score out.

Shared by the gaze detector (head pose, eye gaze) and the face presence detector (which uses the
mesh's face score to confirm doubtful detections). ROI rules follow MediaPipe's face mesh graph:
1.5x the detection box's long side, rotated so the eyes are level.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from models import resolve_model

from .geometry import crop_to_image, map_points
from .runtime import RuntimeConfig, create_session

__all__ = ["MESH_SIZE", "ROI_SCALE", "FaceMesh", "MeshResult", "Roi", "roi_from_box", "warp_crop"]

MESH_SIZE = 192
ROI_SCALE = 1.5

Roi = tuple[tuple[float, float], float, float]
"""(centre x, y in pixels), side in pixels, rotation in radians (clockwise on screen)."""


@dataclass(frozen=True)
class MeshResult:
    """One frame's face mesh in frame pixels: (468, 3) landmarks and face score (0..1)."""

    landmarks: NDArray[np.float64]
    score: float


def roi_from_box(box: NDArray[np.float32], eyes: NDArray[np.float32]) -> Roi:
    """Detection box (x0, y0, x1, y1) and its two eye keypoints -> the mesh ROI."""
    x0, y0, x1, y1 = (float(v) for v in box)
    d = eyes[1].astype(np.float64) - eyes[0].astype(np.float64)
    angle = float(np.arctan2(d[1], d[0]))
    return ((x0 + x1) / 2, (y0 + y1) / 2), max(x1 - x0, y1 - y0) * ROI_SCALE, angle


def warp_crop(frame: NDArray[np.uint8], roi: Roi, size: int) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """Crop ``roi`` to a ``size`` square; also return the unit-crop -> frame affine."""
    centre, side, angle = roi
    affine = crop_to_image(centre, side, angle)
    # The inverse of an affine [L | t] is [L^-1 | -L^-1 t]; L is a rotation times the side, never singular
    # for a real ROI, and the closed form is a tenth of np.linalg.inv's cost.
    (a, b, tx), (c, d, ty) = affine.tolist()
    k = size / (a * d - b * c)
    to_crop = np.array([[d * k, -b * k, -(d * tx - b * ty) * k], [-c * k, a * k, -(-c * tx + a * ty) * k]])
    crop = cv2.warpAffine(frame, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return np.asarray(crop, np.uint8), affine


class FaceMesh:
    """The face_landmark model behind one ONNX Runtime session."""

    def __init__(self, runtime: RuntimeConfig) -> None:
        self.session: ort.InferenceSession = create_session(
            resolve_model("face_landmark").path, runtime, model_name="face_landmark"
        )
        self._input = self.session.get_inputs()[0].name

    def __call__(self, frame: NDArray[np.uint8], roi: Roi) -> MeshResult:
        crop, affine = warp_crop(frame, roi, MESH_SIZE)
        x = np.multiply(crop[None], np.float32(1.0 / 255.0), dtype=np.float32)
        raw, flag = self.session.run(None, {self._input: x})
        pts = raw.reshape(-1, 3).astype(np.float64) / MESH_SIZE
        xy = map_points(affine, pts[:, :2])
        landmarks = np.concatenate([xy, pts[:, 2:3] * roi[1]], axis=1)
        logit = float(np.clip(flag.reshape(-1)[0], -50.0, 50.0))
        return MeshResult(landmarks, float(1.0 / (1.0 + np.exp(-logit))))
