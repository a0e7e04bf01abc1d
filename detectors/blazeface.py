"""BlazeFace: anchors, box decoding and weighted NMS, plus the model wrapper.

The maths mirrors MediaPipe's ``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator`` and
``NonMaxSuppressionCalculator`` (WEIGHTED, IoU) with the options from its face detection graphs,
so our boxes can be checked against ``mp.solutions.face_detection`` on the same image. The pure
functions are kept separate from the session so they can be tested with tables of cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from models import resolve_model

from .imaging import shrink
from .runtime import RuntimeConfig, create_session

__all__ = [
    "FULL_RANGE",
    "SHORT_RANGE",
    "BlazeFace",
    "BlazeFaceSpec",
    "Faces",
    "decode",
    "letterbox",
    "ssd_anchors",
    "weighted_nms",
]

FloatArray = NDArray[np.float32]


@dataclass(frozen=True)
class BlazeFaceSpec:
    """The anchor layout and decoding scales of one BlazeFace variant (MediaPipe's graph options)."""

    model: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_stride_layer: int


SHORT_RANGE = BlazeFaceSpec("face_detection_short_range", 128, (8, 16, 16, 16), 2)
FULL_RANGE = BlazeFaceSpec("face_detection_full_range", 192, (4,), 1)

KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")
"""BlazeFace keypoint order; "right" is the subject's right, which is on the image left."""


def ssd_anchors(spec: BlazeFaceSpec) -> FloatArray:
    """Anchor centres (A, 2) in [0, 1]; fixed anchor size, so width and height are 1."""
    out: list[FloatArray] = []
    i = 0
    strides = spec.strides
    while i < len(strides):
        stride = strides[i]
        repeats = 0
        while i < len(strides) and strides[i] == stride:
            repeats += spec.anchors_per_stride_layer
            i += 1
        n = int(np.ceil(spec.input_size / stride))
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, repeats, axis=0).astype(np.float32))
    return np.concatenate(out, axis=0)


@dataclass(frozen=True)
class Faces:
    """Detections in one frame, in pixels of that frame.

    ``boxes`` (K, 4) as x0, y0, x1, y1; ``scores`` (K,); ``keypoints`` (K, 6, 2) in ``KEYPOINTS``
    order. Sorted by score, highest first.
    """

    boxes: FloatArray
    scores: FloatArray
    keypoints: FloatArray

    @staticmethod
    def empty() -> Faces:
        return Faces(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 6, 2), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def sizes(self) -> FloatArray:
        """Face size in pixels: the geometric mean of box width and height."""
        w = self.boxes[:, 2] - self.boxes[:, 0]
        h = self.boxes[:, 3] - self.boxes[:, 1]
        sizes: FloatArray = np.sqrt(np.clip(w, 0, None) * np.clip(h, 0, None)).astype(np.float32)
        return sizes

    def select(self, keep: NDArray[np.bool_]) -> Faces:
        return Faces(self.boxes[keep], self.scores[keep], self.keypoints[keep])

    @staticmethod
    def join(parts: list[Faces]) -> Faces:
        if not parts:
            return Faces.empty()
        return Faces(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.keypoints for p in parts]),
        )


def decode(
    raw_boxes: FloatArray, raw_scores: FloatArray, anchors: FloatArray, input_size: int, min_score: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Decode one image's raw outputs into boxes (K, 4), scores (K,), keypoints (K, 6, 2) in [0, 1].

    Scores are clipped to +-100 before the sigmoid, as MediaPipe does, so extreme logits cannot
    overflow.
    """
    logits = raw_scores.reshape(-1)
    # The sigmoid is monotonic: preselect on the logit (a little leniently; float64's sigmoid rounds to 1
    # above ~37), then take the sigmoid of the few candidates only and apply the exact rule to them.
    if min_score <= 0.0:
        floor = -np.inf
    elif min_score >= 1.0:
        floor = 30.0
    else:
        floor = float(np.log(min_score / (1.0 - min_score))) - 1e-3
    keep = logits >= floor
    if not np.any(keep):
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 6, 2), np.float32)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep].astype(np.float64), -100.0, 100.0)))
    keep_scores = scores >= min_score  # rounding at the boundary: the same rule as the float64 sigmoid
    keep[keep] = keep_scores
    scores = scores[keep_scores]
    r = raw_boxes[keep] / float(input_size)
    a = anchors[keep]
    cx = r[:, 0] + a[:, 0]
    cy = r[:, 1] + a[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
    return boxes.astype(np.float32), scores.astype(np.float32), kps.astype(np.float32)


def iou_one_to_many(box: FloatArray, boxes: FloatArray) -> FloatArray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def weighted_nms(
    boxes: FloatArray, scores: FloatArray, keypoints: FloatArray, iou_threshold: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MediaPipe's WEIGHTED suppression: each kept face is the score-weighted mean of its cluster.

    Averaging the overlapping anchors, rather than keeping only the best one, steadies boxes and
    keypoints from frame to frame, which the landmark crop and the head pose inherit.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    remaining = np.ones(len(scores), dtype=bool)
    out_b, out_s, out_k = [], [], []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        overlap = iou_one_to_many(boxes[i], boxes) > iou_threshold
        cluster = remaining & overlap
        cluster[i] = True
        w = scores[cluster][:, None]
        out_b.append((boxes[cluster] * w).sum(0) / w.sum())
        out_k.append((keypoints[cluster] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[i])
        remaining &= ~cluster
    if not out_s:
        return boxes[:0], scores[:0], keypoints[:0]
    return (
        np.stack(out_b).astype(np.float32),
        np.asarray(out_s, np.float32),
        np.stack(out_k).astype(np.float32),
    )


def letterbox(image: NDArray[np.uint8], size: int) -> tuple[NDArray[np.uint8], float, float, float]:
    """Fit ``image`` into a ``size`` square, keeping aspect ratio, padding with black.

    Returns the square and (scale, pad_x, pad_y) so that ``pixel = (square_px - pad) / scale``.
    """
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = shrink(image, nw, nh) if scale < 1 else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((size, size, 3), np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py : py + nh, px : px + nw] = resized
    return out, scale, float(px), float(py)


class BlazeFace:
    """One BlazeFace session: images in, per-image ``Faces`` out (in image pixels)."""

    def __init__(self, spec: BlazeFaceSpec, runtime: RuntimeConfig) -> None:
        info = resolve_model(spec.model)
        self.spec = spec
        self.anchors = ssd_anchors(spec)
        self.session: ort.InferenceSession = create_session(info.path, runtime, model_name=spec.model)
        self._input = self.session.get_inputs()[0].name

    def detect(
        self,
        images: list[NDArray[np.uint8]],
        min_score: float,
        iou_threshold: float,
        offsets: list[tuple[float, float]] | None = None,
        *,
        sure_score: float | None = None,
    ) -> list[Faces]:
        """Detect faces in each image (any size); ``offsets`` shift results for tiles of a larger frame.

        With ``sure_score`` (above ``min_score``), anchors at or above it and anchors below it are merged apart:
        the faces at or above it are exactly those ``detect`` finds with ``min_score = sure_score`` (weaker anchors
        never move their boxes), and the weaker faces come after them, each scored below ``sure_score``."""
        if not images:
            return []
        size = self.spec.input_size
        tensors = np.empty((len(images), size, size, 3), np.float32)
        geometry = []
        for i, img in enumerate(images):
            square, scale, px, py = letterbox(img, size)
            np.multiply(square, 1.0 / 127.5, out=tensors[i], casting="unsafe")
            geometry.append((scale, px, py))
        tensors -= 1.0
        raw_boxes, raw_scores = self.session.run(None, {self._input: tensors})
        out: list[Faces] = []
        for i, (scale, px, py) in enumerate(geometry):
            b, s, k = decode(raw_boxes[i], raw_scores[i], self.anchors, size, min_score)
            if sure_score is None:
                b, s, k = weighted_nms(b, s, k, iou_threshold)
            else:
                parts = [weighted_nms(b[m], s[m], k[m], iou_threshold) for m in (s >= sure_score, s < sure_score)]
                b, s, k = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
            ox, oy = offsets[i] if offsets is not None else (0.0, 0.0)
            b = b * size
            b[:, [0, 2]] = (b[:, [0, 2]] - px) / scale + ox
            b[:, [1, 3]] = (b[:, [1, 3]] - py) / scale + oy
            k = k * size
            k[..., 0] = (k[..., 0] - px) / scale + ox
            k[..., 1] = (k[..., 1] - py) / scale + oy
            out.append(Faces(b.astype(np.float32), s, k.astype(np.float32)))
        return out
