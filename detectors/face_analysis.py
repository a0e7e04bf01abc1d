"""Face presence and gaze in one pass: detect faces once per frame, then count them and read the main one.

Run side by side, ``face_presence`` and ``gaze`` each run the short-range BlazeFace on every frame and
each load their own face mesh. This detector loads the short-range model and the mesh once, runs the
short-range pass once per frame, and hands the same detections to both: the presence rules count them
(with the full-range pass at its own rate), the gaze path picks its main face from them. Its columns
are exactly those of the two detectors, with the same meanings (``SIGNAL_COLUMNS``).

The one pass runs at the lower of the two score thresholds with face presence's NMS overlap; each side
then applies its own threshold. With the defaults (0.5 and 0.5, IoU 0.3) the detections, and so the
signals, are those of the two detectors run separately.
"""

from __future__ import annotations

from .blazeface import SHORT_RANGE, BlazeFace
from .face_presence import COLUMNS as PRESENCE_COLUMNS
from .face_presence import FacePresenceConfig, FacePresenceDetector
from .gaze import COLUMNS as GAZE_COLUMNS
from .gaze import GazeConfig, GazeDetector
from .mesh import FaceMesh
from .runtime import RuntimeConfig
from .seams import FrameBatch, Signals

__all__ = ["COLUMNS", "FaceAnalysisDetector"]

COLUMNS = {**PRESENCE_COLUMNS, **GAZE_COLUMNS}


class FaceAnalysisDetector:
    """``face_presence`` and ``gaze`` columns from one short-range detection per frame."""

    name = "face_analysis"
    version = f"1+face_presence{FacePresenceDetector.version}+gaze{GazeDetector.version}"

    def __init__(
        self,
        presence: FacePresenceConfig | None = None,
        gaze: GazeConfig | None = None,
        runtime: RuntimeConfig | None = None,
    ) -> None:
        runtime = runtime or RuntimeConfig()
        short = BlazeFace(SHORT_RANGE, runtime)
        mesh = FaceMesh(runtime)
        self.presence = FacePresenceDetector(presence, runtime, short=short, mesh=mesh)
        self.gaze = GazeDetector(gaze, runtime, detector=short, mesh=mesh)
        self._short = short
        self._min_score = min(self.presence.config.min_score, self.gaze.config.min_face_score)

    def __call__(self, batch: FrameBatch) -> Signals:
        nms = self.presence.config.nms_iou
        detections = [self._short.detect([frame], self._min_score, nms)[0] for frame in batch.frames]
        return Signals.merge([self.presence.signals(batch, detections), self.gaze.signals(batch, detections)])
