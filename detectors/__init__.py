"""Detectors: typed frame batches in, typed per-frame signals out.

No I/O beyond loading model files, no Ray, no storage, no globals: the pipeline builds each
detector once per worker (``build_detector``) and calls it on ``FrameBatch`` chunks. Column names
and units are listed in ``SIGNAL_COLUMNS`` and in ``docs/detectors.md``.
"""

from .calibration import (
    AwayConfig,
    AwayTrace,
    Calibration,
    Reference,
    away_events,
    away_trace,
    calibrate,
    looking_away_score,
)
from .face_analysis import COLUMNS as FACE_ANALYSIS_COLUMNS
from .face_analysis import FaceAnalysisDetector
from .face_presence import COLUMNS as FACE_PRESENCE_COLUMNS
from .face_presence import FacePresenceConfig, FacePresenceDetector
from .gaze import COLUMNS as GAZE_COLUMNS
from .gaze import GazeConfig, GazeDetector
from .placement import Placement, PlacementRule, placement_groups, stretches
from .quality import COLUMNS as QUALITY_COLUMNS
from .quality import FrameQualityDetector, QualityConfig
from .registry import DEFAULT_DETECTORS, REGISTRY, DetectorConfigs, build_detector, build_detectors
from .runtime import RuntimeConfig, create_session, select_providers
from .seams import Detector, FrameBatch, Signals

SIGNAL_COLUMNS: dict[str, dict[str, str]] = {
    "face_presence": FACE_PRESENCE_COLUMNS,
    "gaze": GAZE_COLUMNS,
    "face_analysis": FACE_ANALYSIS_COLUMNS,
    "quality": QUALITY_COLUMNS,
}
"""Column name -> meaning and unit, per registered detector."""

__all__ = [
    "DEFAULT_DETECTORS",
    "REGISTRY",
    "SIGNAL_COLUMNS",
    "AwayConfig",
    "AwayTrace",
    "Calibration",
    "Detector",
    "DetectorConfigs",
    "FaceAnalysisDetector",
    "FacePresenceConfig",
    "FacePresenceDetector",
    "FrameBatch",
    "FrameQualityDetector",
    "GazeConfig",
    "GazeDetector",
    "Placement",
    "PlacementRule",
    "QualityConfig",
    "Reference",
    "RuntimeConfig",
    "Signals",
    "away_events",
    "away_trace",
    "build_detector",
    "build_detectors",
    "calibrate",
    "create_session",
    "looking_away_score",
    "placement_groups",
    "select_providers",
    "stretches",
]
