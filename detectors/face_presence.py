"""Face presence: how many faces are in each frame, how sure, how big.

Two BlazeFace passes, because neither alone is good enough on webcam footage (measured on the dev
sessions, see docs/detectors.md):
- the full-range model (192x192) finds small and far faces, e.g. a second person behind the
  candidate, but loses near-profile and tilted heads;
- the short-range model (128x128) keeps near-profile heads but misses faces below about a tenth
  of the frame, and fires on hands at scores up to ~0.65.
A short-range face that the full-range pass did not also find, and that scores below
``verify_below``, must be confirmed by the face mesh's face score (``verify_min_landmark_score``):
a hand turning a cup scores < 0.01 there, a profile face usually well above. Frames are
letterboxed, never stretched, so a 1280x720 frame keeps its face shapes.

The full-range pass can run at a lower rate (``full_range_every_ms``); frames it skips report
``small_face_checked = 0`` so the segmenter knows the count there rests on the short-range pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .blazeface import FULL_RANGE, SHORT_RANGE, BlazeFace, Faces
from .mesh import FaceMesh, roi_from_box
from .runtime import RuntimeConfig
from .seams import FrameBatch, Signals

__all__ = ["COLUMNS", "FacePresenceConfig", "FacePresenceDetector", "overlaps", "rate_mask"]

COLUMNS = {
    "face_count": "counted faces: passing the score, size and verification rules (0, 1, 2, ...)",
    "face_score_max": "highest detection score among counted faces (0..1), 0 without a face",
    "face_size_px": "size (sqrt of box area, frame pixels) of the largest counted face; NaN without a face",
    "face_cx": "centre x of the largest counted face, in frame widths (0..1); NaN without a face",
    "face_cy": "centre y of the largest counted face, in frame heights (0..1); NaN without a face",
    "second_face_size_px": "size of the second-largest counted face; NaN with fewer than two",
    "face_too_small": "1 when the largest counted face is below too_small_px, else 0; NaN without a face",
    "small_face_checked": "1 when the full-range (small face) pass ran on this frame, else 0",
}


@dataclass(frozen=True)
class FacePresenceConfig:
    """Thresholds are settings because the right trade-off depends on the exam's policy."""

    min_score: float = 0.5
    """A short-range detection counts as a face at or above this score (after verification)."""
    full_range_min_score: float = 0.6
    """A full-range detection counts as a face at or above this score (MediaPipe's default)."""
    verify_below: float = 0.7
    """Short-range-only faces scoring below this need the face mesh to confirm them."""
    verify_min_landmark_score: float = 0.02
    """Face mesh score that confirms a doubtful face (hands scored < 0.01, faces 0.02-1)."""
    min_face_px: float = 16.0
    """Faces smaller than this (sqrt of box area, frame pixels) are not counted."""
    too_small_px: float = 60.0
    """The largest face below this size gets ``face_too_small = 1`` (candidate too far away)."""
    nms_iou: float = 0.3
    """Weighted-NMS overlap within one pass (MediaPipe's value)."""
    merge_overlap: float = 0.5
    """Detections of the two passes are one face when intersection / smaller area exceeds this."""
    full_range: bool = True
    """Run the full-range pass for small or far faces."""
    full_range_every_ms: int = 0
    """Run it at most once per this many ms of video (0 = every frame)."""

    def __post_init__(self) -> None:
        for name in (
            "min_score",
            "full_range_min_score",
            "verify_below",
            "verify_min_landmark_score",
            "nms_iou",
            "merge_overlap",
        ):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"FacePresenceConfig.{name}: expected a value in (0, 1], found {value}")
        if self.min_face_px < 0 or self.too_small_px < 0:
            raise ValueError(
                f"FacePresenceConfig: expected non-negative sizes, found min_face_px={self.min_face_px}, "
                f"too_small_px={self.too_small_px}"
            )
        if self.full_range_every_ms < 0:
            raise ValueError(f"FacePresenceConfig.full_range_every_ms: expected >= 0, found {self.full_range_every_ms}")


def rate_mask(timestamps_ms: NDArray[np.int64], every_ms: int) -> NDArray[np.bool_]:
    """Frames on which a periodic pass runs: the first frame of each ``every_ms`` bucket of time.

    Buckets are aligned to absolute timestamps, so the choice does not depend on how the
    pipeline cut the session into chunks (except that each chunk's first frame always runs).
    """
    if every_ms <= 0 or timestamps_ms.size == 0:
        return np.ones(timestamps_ms.shape, dtype=bool)
    bucket = timestamps_ms // every_ms
    mask = np.ones(bucket.shape, dtype=bool)
    mask[1:] = bucket[1:] != bucket[:-1]
    return mask


def overlaps(boxes: NDArray[np.float32], others: NDArray[np.float32], threshold: float) -> NDArray[np.bool_]:
    """For each of ``boxes``, whether it overlaps any of ``others`` (intersection over smaller area).

    Intersection over the smaller box, not IoU, because the two models box the same face
    differently (the full-range box is taller) and a face must not be counted twice.
    """
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros(len(boxes), dtype=bool)
    b, o = boxes[:, None, :], others[None, :, :]
    iw = np.clip(np.minimum(b[..., 2], o[..., 2]) - np.maximum(b[..., 0], o[..., 0]), 0, None)
    ih = np.clip(np.minimum(b[..., 3], o[..., 3]) - np.maximum(b[..., 1], o[..., 1]), 0, None)
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    area_o = (o[..., 2] - o[..., 0]) * (o[..., 3] - o[..., 1])
    ratio = iw * ih / np.maximum(np.minimum(area_b, area_o), 1e-9)
    return np.asarray((ratio > threshold).any(axis=1), dtype=bool)


class FacePresenceDetector:
    """Counts faces per frame; see the module docstring and ``COLUMNS``."""

    name = "face_presence"
    version = "1"

    def __init__(self, config: FacePresenceConfig | None = None, runtime: RuntimeConfig | None = None) -> None:
        self.config = config or FacePresenceConfig()
        runtime = runtime or RuntimeConfig()
        self.short = BlazeFace(SHORT_RANGE, runtime)
        self.full = BlazeFace(FULL_RANGE, runtime) if self.config.full_range else None
        self.mesh = FaceMesh(runtime) if self.config.verify_below > self.config.min_score else None

    def faces(self, frame: NDArray[np.uint8], full_pass: bool = True) -> Faces:
        """The counted faces of one frame, largest first, with their detection scores."""
        cfg = self.config
        short = self.short.detect([frame], cfg.min_score, cfg.nms_iou)[0]
        short = short.select(short.sizes >= cfg.min_face_px)
        full = Faces.empty()
        if self.full is not None and full_pass:
            full = self.full.detect([frame], cfg.full_range_min_score, cfg.nms_iou)[0]
            full = full.select(full.sizes >= cfg.min_face_px)
        extra = short.select(~overlaps(short.boxes, full.boxes, cfg.merge_overlap))
        if self.mesh is not None and len(extra):
            keep = extra.scores >= cfg.verify_below
            for i in np.flatnonzero(~keep):
                roi = roi_from_box(extra.boxes[i], extra.keypoints[i, :2])
                keep[i] = self.mesh(frame, roi).score >= cfg.verify_min_landmark_score
            extra = extra.select(keep)
        joined = Faces.join([full, extra])
        order = np.argsort(-joined.sizes, kind="stable")
        return Faces(joined.boxes[order], joined.scores[order], joined.keypoints[order])

    def detect(self, batch: FrameBatch) -> list[Faces]:
        """Per-frame counted faces (boxes, scores, keypoints in frame pixels), largest first."""
        full_due = rate_mask(batch.timestamps_ms, self.config.full_range_every_ms)
        return [self.faces(frame, bool(full_due[i])) for i, frame in enumerate(batch.frames)]

    def __call__(self, batch: FrameBatch) -> Signals:
        n = len(batch)
        cols = {name: np.full(n, np.nan) for name in COLUMNS}
        ran = rate_mask(batch.timestamps_ms, self.config.full_range_every_ms)
        cols["small_face_checked"] = ran.astype(np.float64) if self.full is not None else np.zeros(n)
        for i, counted in enumerate(self.detect(batch)):
            cols["face_count"][i] = len(counted)
            cols["face_score_max"][i] = float(counted.scores.max()) if len(counted) else 0.0
            if len(counted):
                size = float(counted.sizes[0])
                box = counted.boxes[0]
                cols["face_size_px"][i] = size
                cols["face_cx"][i] = float(box[0] + box[2]) / 2 / batch.width
                cols["face_cy"][i] = float(box[1] + box[3]) / 2 / batch.height
                cols["face_too_small"][i] = float(size < self.config.too_small_px)
            if len(counted) > 1:
                cols["second_face_size_px"][i] = float(counted.sizes[1])
        return Signals(batch.timestamps_ms, cols)
