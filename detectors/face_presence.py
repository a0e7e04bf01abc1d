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

The full-range pass is the most expensive model here (192x192, about twice the short-range
model's time, plus a non-integer resize of the frame), and the faces only it finds (small, far,
behind the candidate) rarely come and go within a second. So it runs at most once per
``full_range_every_ms`` (default 1000 ms; the first frame of each batch always runs), and the faces
it found that the short-range pass missed are carried to the frames in between
(``FacePresenceDetector.count_carried``). The trade-off: a small or far face that appears or leaves
is counted up to that long late; faces the short-range model finds are still looked for on every
frame. Frames that only carry a result report ``small_face_checked = 0``; ``full_range_every_ms = 0``
runs the pass on every frame.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    full_range_every_ms: int = 1000
    """Run it at most once per this many ms of video and carry its faces between (0 = every frame)."""

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


def _largest_first(faces: Faces) -> Faces:
    order = np.argsort(-faces.sizes, kind="stable")
    return Faces(faces.boxes[order], faces.scores[order], faces.keypoints[order])


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
    """Counts faces per frame; see the module docstring and ``COLUMNS``.

    ``short`` and ``mesh`` can be passed in so a detector that also needs them (``FaceAnalysisDetector``)
    loads each model once and runs the short-range pass once per frame.
    """

    name = "face_presence"
    version = "2"

    def __init__(
        self,
        config: FacePresenceConfig | None = None,
        runtime: RuntimeConfig | None = None,
        *,
        short: BlazeFace | None = None,
        mesh: FaceMesh | None = None,
    ) -> None:
        self.config = config or FacePresenceConfig()
        runtime = runtime or RuntimeConfig()
        self.short = short or BlazeFace(SHORT_RANGE, runtime)
        self.full = BlazeFace(FULL_RANGE, runtime) if self.config.full_range else None
        self.mesh: FaceMesh | None = None
        if self.config.verify_below > self.config.min_score:
            self.mesh = mesh or FaceMesh(runtime)

    def detect_short(self, frame: NDArray[np.uint8]) -> Faces:
        """The short-range pass alone, at ``min_score``: what ``count`` takes as ``short``."""
        return self.short.detect([frame], self.config.min_score, self.config.nms_iou)[0]

    def detect_full(self, frame: NDArray[np.uint8]) -> Faces:
        """The full-range pass alone (empty when it is off): what ``count`` takes as ``full``."""
        if self.full is None:
            return Faces.empty()
        cfg = self.config
        full = self.full.detect([frame], cfg.full_range_min_score, cfg.nms_iou)[0]
        return full.select(full.sizes >= cfg.min_face_px)

    def count(self, frame: NDArray[np.uint8], short: Faces, full: Faces) -> Faces:
        """The counted faces of one frame, largest first, from both passes run on it.

        Full-range boxes replace the short-range ones they overlap; short-range-only faces below
        ``verify_below`` must be confirmed by the face mesh.
        """
        short = self._eligible(short)
        extra = short.select(~overlaps(short.boxes, full.boxes, self.config.merge_overlap))
        return _largest_first(Faces.join([full, self._verified(frame, extra)]))

    def count_carried(self, frame: NDArray[np.uint8], short: Faces, seen: Faces, far: Faces) -> Faces:
        """The counted faces of a frame the full-range pass skipped, from the last frame it ran on.

        ``seen``: all faces of that last full-range pass; ``far``: those of them that the short-range pass
        did not find there (small or far faces). The frame's own short-range faces keep their boxes (a
        carried box may have moved); one that a ``seen`` face overlaps needs no mesh check; a ``far`` face
        that no short-range face overlaps is counted as last seen. Faces both passes found are not carried:
        the short-range pass looks for them on every frame, so a candidate who leaves is not counted on.
        """
        cfg = self.config
        short = self._eligible(short)
        confirmed = overlaps(short.boxes, seen.boxes, cfg.merge_overlap)
        kept = Faces.join([short.select(confirmed), self._verified(frame, short.select(~confirmed))])
        carried = far.select(~overlaps(far.boxes, short.boxes, cfg.merge_overlap))
        return _largest_first(Faces.join([kept, carried]))

    def _eligible(self, short: Faces) -> Faces:
        cfg = self.config
        return short.select((short.scores >= cfg.min_score) & (short.sizes >= cfg.min_face_px))

    def _verified(self, frame: NDArray[np.uint8], extra: Faces) -> Faces:
        """Short-range-only faces, less those below ``verify_below`` that the face mesh does not confirm."""
        cfg = self.config
        if self.mesh is None or not len(extra):
            return extra
        keep = extra.scores >= cfg.verify_below
        for i in np.flatnonzero(~keep):
            roi = roi_from_box(extra.boxes[i], extra.keypoints[i, :2])
            keep[i] = self.mesh(frame, roi).score >= cfg.verify_min_landmark_score
        return extra.select(keep)

    def faces(self, frame: NDArray[np.uint8]) -> Faces:
        """The counted faces of one still frame (both passes), largest first, with their detection scores."""
        return self.count(frame, self.detect_short(frame), self.detect_full(frame))

    def detect(self, batch: FrameBatch, short: Sequence[Faces] | None = None) -> list[Faces]:
        """Per-frame counted faces (boxes, scores, keypoints in frame pixels), largest first.

        ``short``: the batch's short-range detections at ``min_score``, when the caller already ran them.
        The full-range result is carried to the frames ``full_range_every_ms`` skips, within this batch.
        """
        if short is not None and len(short) != len(batch):
            raise ValueError(f"short: expected one detection per frame ({len(batch)}), found {len(short)}")
        due = rate_mask(batch.timestamps_ms, self.config.full_range_every_ms)
        out: list[Faces] = []
        seen = far = Faces.empty()
        for i, frame in enumerate(batch.frames):
            found = short[i] if short is not None else self.detect_short(frame)
            if due[i]:
                seen = self.detect_full(frame)
                far = seen.select(~overlaps(seen.boxes, self._eligible(found).boxes, self.config.merge_overlap))
                out.append(self.count(frame, found, seen))
            else:
                out.append(self.count_carried(frame, found, seen, far))
        return out

    def signals(self, batch: FrameBatch, short: Sequence[Faces] | None = None) -> Signals:
        """The ``COLUMNS`` of a batch; ``short`` as in ``detect``."""
        n = len(batch)
        cols = {name: np.full(n, np.nan) for name in COLUMNS}
        ran = rate_mask(batch.timestamps_ms, self.config.full_range_every_ms)
        cols["small_face_checked"] = ran.astype(np.float64) if self.full is not None else np.zeros(n)
        for i, counted in enumerate(self.detect(batch, short)):
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

    def __call__(self, batch: FrameBatch) -> Signals:
        return self.signals(batch)
