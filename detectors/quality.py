"""Cheap frame-quality signals: camera covered or too dark, extreme blur.

These let the pipeline say "camera blocked" instead of "no face", and discount a missing face in
a frame nobody could read. They work on a small grey copy of the frame (about 0.1 ms), so they
cost nothing next to the models. Face size, the third quality signal, comes from the face
presence detector (``face_too_small``), which is the one that knows where the face is.

They measure the picture, not the black bars around it (``picture_area``). A portrait phone video in a
landscape recording, or a 4:3 camera in a 16:9 one, arrives pillarboxed: in ``../shared/data`` session18 (a well-lit
room, 1280x720) the bars took the frame's mean luma to 34, and 88% of the frames with a face in them read as too
dark, which makes a missing face "unknown" instead of no face. Bars are found as runs of black rows or columns
at both edges, of the same width on each side, as letterboxing centres the picture: a dark room is not black in
equal bands at both edges.

A lens under a finger, a palm or a sticky note in a lit room is neither black nor uniform: the cover is lit
unevenly, so its luma spreads as widely as a dim room's. But it is far out of focus, so nothing is left in it at
the scale of a scene's edges: ``detail`` (a band-pass of the picture over its mean luma) measures that, whatever
the exposure (quality version 3). A blank wall filling the view has no detail either, and reads as covered, as it
did by its contrast before.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from .imaging import shrink
from .seams import FrameBatch, Signals

__all__ = ["COLUMNS", "FrameQualityDetector", "QualityConfig", "picture_area"]

COLUMNS = {
    "brightness": "mean luma of the picture (inside any letterbox or pillarbox bars), 0..255",
    "contrast": "standard deviation of the picture's luma, 0..~128",
    "sharpness": "variance of the Laplacian of the picture on the analysis_width grey copy, bars cropped, not "
    "rescaled (higher = sharper)",
    "too_dark": "1 when brightness < dark_luma, else 0",
    "detail": "standard deviation of the picture's luma band-passed between Gaussian scales of 1 and 4 pixels "
    "(on the analysis_width copy), over its mean luma: the edges a scene has at any exposure, none on a cover",
    "covered": "1 when the picture is black (brightness < covered_luma), nearly uniform (contrast < "
    "covered_contrast) or without detail (detail < covered_detail): lens covered or camera off",
    "too_blurry": "1 when sharpness < blur_sharpness and the frame is not covered, else 0",
}


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds on a grey copy ``analysis_width`` pixels wide (so they do not depend on resolution).

    Bars (``picture_area``): a row or column is black when its 95th percentile of luma is at most ``bar_luma``;
    the two bars of a pair may differ by ``bar_slack`` rows or columns (the grey copy's rounding), and the
    picture inside them keeps at least ``min_picture_share`` of the frame's width and height, or there are no
    bars (a black frame is a covered lens, not a small picture).
    """

    analysis_width: int = 160
    dark_luma: float = 40.0
    covered_luma: float = 12.0
    covered_contrast: float = 6.0
    covered_detail: float = 0.016
    """A picture with less detail than this is covered: about the geometric middle of the most a cover in a lit room
    kept and the least a face did. Measured (2026-12-07) on the development sessions, as recorded and under the
    capture benchmark's conditions: frames with a face at least 0.027 as recorded (0.0195 far back, a low-contrast
    stretch), empty rooms at least 0.044 but for a blank studio wall (0.001); a fingertip, a palm and a sticky note
    over the lens at most 0.012 as recorded (0.014 far back); a Gaussian blur of 20 pixels over a 512-pixel photo
    keeps 0.039."""
    blur_sharpness: float = 8.0
    bar_luma: float = 20.0
    bar_slack: int = 2
    min_picture_share: float = 0.25

    def __post_init__(self) -> None:
        if self.analysis_width < 16:
            raise ValueError(f"QualityConfig.analysis_width: expected >= 16, found {self.analysis_width}")
        names = ("dark_luma", "covered_luma", "covered_contrast", "covered_detail", "blur_sharpness", "bar_luma")
        for name in (*names, "bar_slack"):
            if getattr(self, name) < 0:
                raise ValueError(f"QualityConfig.{name}: expected >= 0, found {getattr(self, name)}")
        if not 0 < self.min_picture_share <= 1:
            raise ValueError(f"QualityConfig.min_picture_share: expected in (0, 1], found {self.min_picture_share}")


def _between_bars(black: NDArray[np.bool_], slack: int, min_inside: int) -> slice:
    """The span between equal runs of black lines at both ends of ``black`` (one flag per row or column), less the
    first line of the picture on each side: on the shrunk copy it mixes the bar's black with the picture, a hard
    edge that no picture has (a bright cover inside bars read contrast 23 and plenty of detail from it)."""
    n = len(black)
    lead = n if black.all() else int(np.argmin(black))
    trail = n if black.all() else int(np.argmin(black[::-1]))
    if min(lead, trail) == 0 or abs(lead - trail) > slack or n - lead - trail < min_inside:
        return slice(0, n)
    return slice(lead + 1, n - trail - 1)


def picture_area(grey: NDArray[np.uint8], config: QualityConfig) -> tuple[slice, slice]:
    """(rows, columns) of the picture inside letterbox or pillarbox bars of ``grey``; the whole frame where it has
    none (see ``QualityConfig``)."""
    return _span(grey, 1, config), _span(grey, 0, config)


def _span(grey: NDArray[np.uint8], axis: int, config: QualityConfig) -> slice:
    """The picture's span along the rows (``axis`` 1: each row is a line) or the columns (``axis`` 0)."""
    lines = grey if axis == 1 else grey.T
    n = len(lines)

    def black(line: NDArray[np.uint8]) -> bool:
        # Where as many values are lit as lie at or above the 95th percentile's rank, it is lit: no sort needed.
        if np.count_nonzero(line > config.bar_luma) >= len(line) - int(0.95 * (len(line) - 1)):
            return False
        return bool(np.percentile(line, 95) <= config.bar_luma)

    if not (black(lines[0]) and black(lines[-1])):  # most frames: no bars, and two short lines looked at
        return slice(0, n)
    profile = np.percentile(grey, 95, axis=axis) <= config.bar_luma
    return _between_bars(profile, config.bar_slack, round(n * config.min_picture_share))


def _band_pass(grey: NDArray[np.float32]) -> NDArray[np.float32]:
    """The picture between Gaussian scales of 1 and 4 pixels: its edges, without pixel noise or smooth shading
    (a quadratic falloff, such as a lens's vignetting, passes as a constant)."""
    fine = cv2.GaussianBlur(grey, (0, 0), 1.0)
    return np.asarray(fine - cv2.GaussianBlur(grey, (0, 0), 4.0), np.float32)


class FrameQualityDetector:
    """Per-frame brightness, contrast, sharpness and detail of the picture, with threshold flags; see ``COLUMNS``.

    Version 3 adds ``detail`` (a cover in a lit room is covered) and leaves out the line where a bar meets the
    picture; version 2 measures inside letterbox and pillarbox bars (``picture_area``); version 1 measured the whole
    frame.
    """

    name = "quality"
    version = "3"

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()

    def __call__(self, batch: FrameBatch) -> Signals:
        cfg = self.config
        n = len(batch)
        w = cfg.analysis_width
        h = max(1, round(batch.height * w / batch.width))
        bright, contrast, sharp, detail = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
        for i, frame in enumerate(batch.frames):
            whole = np.asarray(cv2.cvtColor(shrink(frame, w, h), cv2.COLOR_RGB2GRAY), np.uint8)
            rows, columns = picture_area(whole, cfg)
            grey = np.ascontiguousarray(whole[rows, columns])
            mean, std = cv2.meanStdDev(grey)
            bright[i] = float(mean[0, 0])
            contrast[i] = float(std[0, 0])
            sharp[i] = float(cv2.Laplacian(grey, cv2.CV_32F).var())
            detail[i] = float(_band_pass(grey.astype(np.float32)).std()) / max(bright[i], 1.0)
        covered = (contrast < cfg.covered_contrast) | (bright < cfg.covered_luma) | (detail < cfg.covered_detail)
        cols = {
            "brightness": bright,
            "contrast": contrast,
            "sharpness": sharp,
            "detail": detail,
            "too_dark": (bright < cfg.dark_luma).astype(np.float64),
            "covered": covered.astype(np.float64),
            "too_blurry": ((sharp < cfg.blur_sharpness) & ~covered).astype(np.float64),
        }
        return Signals(batch.timestamps_ms, cols)
