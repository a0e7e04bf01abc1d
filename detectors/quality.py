"""Cheap frame-quality signals: camera covered or too dark, extreme blur.

These let the pipeline say "camera blocked" instead of "no face", and discount a missing face in
a frame nobody could read. They work on a small grey copy of the frame (about 0.1 ms), so they
cost nothing next to the models. Face size, the third quality signal, comes from the face
presence detector (``face_too_small``), which is the one that knows where the face is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .imaging import shrink
from .seams import FrameBatch, Signals

__all__ = ["COLUMNS", "FrameQualityDetector", "QualityConfig"]

COLUMNS = {
    "brightness": "mean luma, 0..255",
    "contrast": "standard deviation of luma, 0..~128",
    "sharpness": "variance of the Laplacian of the frame scaled to analysis_width (higher = sharper)",
    "too_dark": "1 when brightness < dark_luma, else 0",
    "covered": "1 when the frame is nearly uniform (contrast < covered_contrast) or black "
    "(brightness < covered_luma): lens covered or camera off",
    "too_blurry": "1 when sharpness < blur_sharpness and the frame is not covered, else 0",
}


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds on a grey copy ``analysis_width`` pixels wide (so they do not depend on resolution)."""

    analysis_width: int = 160
    dark_luma: float = 40.0
    covered_luma: float = 12.0
    covered_contrast: float = 6.0
    blur_sharpness: float = 8.0

    def __post_init__(self) -> None:
        if self.analysis_width < 16:
            raise ValueError(f"QualityConfig.analysis_width: expected >= 16, found {self.analysis_width}")
        for name in ("dark_luma", "covered_luma", "covered_contrast", "blur_sharpness"):
            if getattr(self, name) < 0:
                raise ValueError(f"QualityConfig.{name}: expected >= 0, found {getattr(self, name)}")


class FrameQualityDetector:
    """Per-frame brightness, contrast and sharpness with threshold flags; see ``COLUMNS``."""

    name = "quality"
    version = "1"

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()

    def __call__(self, batch: FrameBatch) -> Signals:
        cfg = self.config
        n = len(batch)
        w = cfg.analysis_width
        h = max(1, round(batch.height * w / batch.width))
        bright, contrast, sharp = np.empty(n), np.empty(n), np.empty(n)
        for i, frame in enumerate(batch.frames):
            grey = cv2.cvtColor(shrink(frame, w, h), cv2.COLOR_RGB2GRAY)
            mean, std = cv2.meanStdDev(grey)
            bright[i] = float(mean[0, 0])
            contrast[i] = float(std[0, 0])
            sharp[i] = float(cv2.Laplacian(grey, cv2.CV_32F).var())
        covered = (contrast < cfg.covered_contrast) | (bright < cfg.covered_luma)
        cols = {
            "brightness": bright,
            "contrast": contrast,
            "sharpness": sharp,
            "too_dark": (bright < cfg.dark_luma).astype(np.float64),
            "covered": covered.astype(np.float64),
            "too_blurry": ((sharp < cfg.blur_sharpness) & ~covered).astype(np.float64),
        }
        return Signals(batch.timestamps_ms, cols)
