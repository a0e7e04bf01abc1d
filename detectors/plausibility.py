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
What it does not catch: dogs and apes the mesh scores as faces (0.9+: ``detectors.face_verifier`` refuses the
dogs), photoreal CGI, masks, paintings and posters of real faces (they are faces, to every score we have).

**Pictures in a frame** (``PictureFrameRule``, ``framed``): a poster or a photo on the wall is a real face to
every model, and ``pipelines.people.Fixtures`` tells it apart only once the candidate moves in front of it. What
else gives a picture away is its edge: a closed rectangle around the face, inside the camera's view and a few face
sizes across, cutting off the body below the head. A person's head and shoulders are not boxed in like that (a
person in a doorway stands in a frame many face heights tall). So a face that is not the largest one, is at most
``max_size_ratio`` of its size, and sits inside such a rectangle is not counted. It runs only where a second,
smaller face is counted, which is rare, on a window shrunk so the face is ``face_px`` across (0.5-1.3 ms a face).
What it does not catch: an unframed picture, or one whose frame melts into the wall. A framed picture left alone
once the candidate has gone is the largest face then, so it is not judged here; the detector records where it saw
framed pictures (``picture_face_*``) and ``pipelines.people.Fixtures`` remembers those spots. It takes a person on
a screen behind the candidate (a video call) for a picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from .blazeface import Faces
from .geometry import yaw_from_keypoints
from .imaging import rgb_spread

__all__ = ["PictureFrameRule", "PlausibilityRule", "colourful", "framed", "pictures", "plausible"]


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
    return patch.size > 0 and rgb_spread(patch) >= min_chroma


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


@dataclass(frozen=True)
class PictureFrameRule:
    """When a counted face is a picture in a frame (``framed``, ``pictures``)."""

    max_size_ratio: float = 0.6
    """Only faces at most this share of the largest face's size are looked at (a picture behind the candidate,
    as ``pipelines.people.Fixtures``): the largest face is never taken for a picture. A lone small face in a
    rectangle is also what a far candidate spliced into a recording looks like."""
    min_frame_ratio: float = 1.1
    max_frame_ratio: float = 4.0
    """The frame's sides, in face sizes: a portrait's frame holds the head and some shoulders (the Grace Hopper
    poster of dev13 is about 3 face sizes wide); a frame much larger is a window or a door, not a picture."""
    face_px: float = 24.0
    """The window around the face is resized so the face is this many pixels across before edges are found."""
    edge_low: float = 40.0
    edge_high: float = 120.0
    """Canny thresholds: a frame's edge against a wall is a strong, straight step."""
    min_fill: float = 0.85
    """The outline's area over that of the smallest rectangle around it, turned as the outline is: a rectangle,
    upright or turned by a crooked hanging or a camera on a tilted lid (a rounded head outline fills less)."""
    margin_px: float = 3.0
    """The rectangle must lie this far inside the camera's view: the view's own edges are not a picture frame."""
    max_view_share: float = 0.12
    """The rectangle may cover at most this share of the view. A picture on the wall behind the candidate is far
    from the camera and small (dev13's poster: ~5% of the view); a second person's still pasted beside the
    candidate (``../shared/data`` session05: a letterboxed half, 32% of the view, 5 px in from the edge) is a
    person in a rectangle too, and must still count."""


def framed(frame: NDArray[np.uint8], box: NDArray[np.float32], rule: PictureFrameRule) -> bool:
    """Whether the face in ``box`` sits inside a closed rectangle (a picture's edge) of ``min_frame_ratio`` to
    ``max_frame_ratio`` face sizes, wholly inside the frame: edges of a window around the face, whose outlines
    simplified to four corners make a convex, nearly rectangular shape, upright or turned, that encloses the face
    box."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    size = max(x1 - x0, y1 - y0)
    if size <= 1.0:
        return False
    reach = rule.max_frame_ratio * size
    wx0, wy0 = max(0, int(x0 - reach)), max(0, int(y0 - reach))
    wx1, wy1 = min(w, int(x1 + reach)), min(h, int(y1 + reach))
    if wx1 - wx0 < 2 or wy1 - wy0 < 2:
        return False
    f = rule.face_px / size
    grey = cv2.cvtColor(np.ascontiguousarray(frame[wy0:wy1, wx0:wx1]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    edges = np.asarray(cv2.Canny(grey, rule.edge_low, rule.edge_high), dtype=np.uint8)
    face = ((x0 - wx0) * f, (y0 - wy0) * f, (x1 - wx0) * f, (y1 - wy0) * f)
    # As found, the edges keep a frame whose corner touches another line (a shelf, a turned wall's edge) apart
    # from it; thickened, they close small gaps in a frame's outline. Either may show it: the second only if needed.
    return _encloses_face(edges, face, (wx0, wy0, f), (w, h), rule) or _encloses_face(
        np.asarray(cv2.dilate(edges, np.ones((2, 2), np.uint8)), dtype=np.uint8), face, (wx0, wy0, f), (w, h), rule
    )


def _encloses_face(
    edges: NDArray[np.uint8],
    face: tuple[float, float, float, float],
    window: tuple[int, int, float],
    view: tuple[int, int],
    rule: PictureFrameRule,
) -> bool:
    """``framed`` on one edge map of the shrunk window: ``face`` in window pixels, ``window`` its origin in the
    frame and its scale, ``view`` the frame's width and height."""
    fx0, fy0, fx1, fy1 = face
    wx0, wy0, f = window
    w, h = view
    for outline in cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)[0]:
        perimeter = cv2.arcLength(outline, True)
        if perimeter < 4 * rule.min_frame_ratio * rule.face_px:
            continue
        corners = cv2.approxPolyDP(outline, 0.03 * perimeter, True)
        if len(corners) != 4 or not cv2.isContourConvex(corners):
            continue
        area = cv2.contourArea(corners)
        (_, _), (side_a, side_b), _ = cv2.minAreaRect(corners)  # turned with the picture or the camera
        if area < rule.min_fill * side_a * side_b:
            continue
        if any(cv2.pointPolygonTest(corners, (x, y), False) < 0 for x in (fx0, fx1) for y in (fy0, fy1)):
            continue
        longer, shorter = max(side_a, side_b), min(side_a, side_b)
        if longer > rule.max_frame_ratio * rule.face_px or shorter < rule.min_frame_ratio * rule.face_px:
            continue
        bx, by, bw, bh = cv2.boundingRect(corners)
        left, top = wx0 + bx / f, wy0 + by / f
        right, bottom = wx0 + (bx + bw) / f, wy0 + (by + bh) / f
        m = rule.margin_px
        inside = left >= m and top >= m and right <= w - m and bottom <= h - m
        if inside and area / (f * f) <= rule.max_view_share * w * h:
            return True
    return False


def pictures(frame: NDArray[np.uint8], faces: Faces, rule: PictureFrameRule) -> NDArray[np.bool_]:
    """Per face: True where it is a framed picture (``framed``) at most ``max_size_ratio`` of the largest face's
    size (so never the largest face itself)."""
    found = np.zeros(len(faces), dtype=bool)
    if len(faces) < 2:
        return found
    sizes = faces.sizes
    for k in np.flatnonzero(sizes <= rule.max_size_ratio * sizes.max()):
        found[k] = framed(frame, faces.boxes[k], rule)
    return found
