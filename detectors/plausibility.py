"""Is a doubtful face a person? A joint check of the three scores we already compute, for faces only the
short-range model found.

BlazeFace's short-range model fires on a cat's face at 0.52-0.57, so a pet on the chair counted as the
candidate. No single score separates animals and cartoons from real faces in poor light: the face mesh's
own score ranges 0.011-0.73 on the cat and 0.004-0.06 on real faces darkened to gamma 0.25-0.4, so a mesh
threshold that removed the cat doubled the missed faces. Measured on 232 non-human detections (animals,
cartoons, a 3D head) and about 1,700 real-face detections in eight lighting variants, each source held
out in turn when fitting (research note kept with the fairness data), the three scores together
separate them with an AUC of 0.99:

    3.684 x mesh score + 5.822 x full-range score + 1.054 x short-range score - 5.821 >= -2.6

At that threshold 99% of the real faces are kept in every lighting variant, and 78% of the non-human
detections (all of the cat's) are removed. A real face in poor light is nearly always still found by the
full-range model, which carries it; a cat is not.

Where it is not applied, because it fails there:
- **grey frames** (no colour in the face box): on upscaled grey stills of real people the rule kept only
  half of them in some variants;
- **turned heads** (BlazeFace keypoint yaw beyond ``max_abs_yaw_deg``): profiles get low full-range and
  mesh scores, and losing them would turn a head turn into "no face".
What it does not catch: dogs and apes the mesh scores as faces (0.9+), photoreal CGI, masks, paintings and
posters of real faces (they are faces, to every score we have).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .blazeface import Faces
from .geometry import yaw_from_keypoints

__all__ = ["PlausibilityRule", "colourful", "plausible"]


@dataclass(frozen=True)
class PlausibilityRule:
    mesh_weight: float = 3.684
    full_range_weight: float = 5.822
    short_range_weight: float = 1.054
    bias: float = -5.821
    threshold: float = -2.6
    max_abs_yaw_deg: float = 30.0
    """Faces turned further (BlazeFace keypoints) are not judged: profiles score low on every model."""
    min_chroma: float = 8.0
    """Face boxes with less colour than this (``colourful``) are not judged."""
    tracked_face_below: float = 0.8
    """The tracked face is judged where its track starts when its short-range score is below this (other faces
    below ``FacePresenceConfig.verify_below``): dogs' faces that the face mesh follows scored 0.71-0.74, just
    above the 0.7 that makes a face sure, and a wrong candidate costs more than one more full-range pass."""

    def score(self, mesh: float, full_range: float, short_range: float) -> float:
        return (
            self.mesh_weight * mesh
            + self.full_range_weight * full_range
            + self.short_range_weight * short_range
            + self.bias
        )


def colourful(frame: NDArray[np.uint8], box: NDArray[np.float32], min_chroma: float) -> bool:
    """Whether the face box holds colour (the median spread between a pixel's largest and smallest of R, G, B;
    0 for a greyscale picture, 20-80 for skin in colour): the rule is not for grey pictures."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    patch = frame[max(0, y0) : min(h, y1) : 4, max(0, x0) : min(w, x1) : 4]
    if patch.size == 0:
        return False
    return float(np.median(patch.max(axis=2).astype(np.int16) - patch.min(axis=2))) >= min_chroma


def plausible(
    frame: NDArray[np.uint8],
    faces: Faces,
    mesh_scores: NDArray[np.float64],
    full_scores: NDArray[np.float64],
    rule: PlausibilityRule,
) -> NDArray[np.bool_]:
    """Per face: False only where the rule applies (colour, frontal keypoints) and says it is not a person.

    ``full_scores``: each face's full-range score on this frame (0 where the full-range model did not find it).
    """
    keep = np.ones(len(faces), dtype=bool)
    for k in range(len(faces)):
        yaw = yaw_from_keypoints(faces.keypoints[k].astype(np.float64))
        if not np.isfinite(yaw) or abs(yaw) > rule.max_abs_yaw_deg:
            continue
        if not colourful(frame, faces.boxes[k], rule.min_chroma):
            continue
        keep[k] = rule.score(float(mesh_scores[k]), float(full_scores[k]), float(faces.scores[k])) >= rule.threshold
    return keep
