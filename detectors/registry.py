"""The explicit detector registry: name -> constructor.

A detector is listed here by hand, not discovered, so a typo or a broken import is an error at
startup (``build_detector`` raises) rather than a log line and a silently missing signal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .face_analysis import FaceAnalysisDetector
from .face_presence import FacePresenceConfig, FacePresenceDetector
from .gaze import GazeConfig, GazeDetector
from .identity import IdentityConfig
from .quality import FrameQualityDetector, QualityConfig
from .runtime import RuntimeConfig
from .seams import Detector

__all__ = ["DEFAULT_DETECTORS", "REGISTRY", "DetectorConfigs", "build_detector", "build_detectors"]


@dataclass(frozen=True)
class DetectorConfigs:
    """All detector settings in one value, filled by the pipeline's settings object."""

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    face_presence: FacePresenceConfig = field(default_factory=FacePresenceConfig)
    gaze: GazeConfig = field(default_factory=GazeConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    identity: IdentityConfig | None = field(default_factory=IdentityConfig)
    """The face descriptor of the tracked face on a few frames (``face_analysis``); None turns it off."""


REGISTRY: Mapping[str, Callable[[DetectorConfigs], Detector]] = {
    "face_presence": lambda c: FacePresenceDetector(c.face_presence, c.runtime),
    "gaze": lambda c: GazeDetector(c.gaze, c.runtime),
    "face_analysis": lambda c: FaceAnalysisDetector(c.face_presence, c.gaze, c.runtime, c.identity),
    "quality": lambda c: FrameQualityDetector(c.quality),
}

DEFAULT_DETECTORS = ("face_analysis", "quality")
"""What the pipeline runs: every signal column once. ``face_analysis`` gives the ``face_presence`` and
``gaze`` columns from one face mesh track and the detections it needs, so those two are not run beside it (their columns
would clash in ``Signals.merge``); they stay registered for running either alone."""


def build_detector(name: str, configs: DetectorConfigs | None = None) -> Detector:
    """Construct one registered detector (loading its models); unknown names raise ``KeyError``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown detector {name!r}; expected one of {sorted(REGISTRY)}")
    detector = REGISTRY[name](configs or DetectorConfigs())
    if not isinstance(detector, Detector):
        raise TypeError(f"detector {name!r} does not implement the Detector protocol")
    return detector


def build_detectors(names: list[str] | None = None, configs: DetectorConfigs | None = None) -> list[Detector]:
    """Construct several detectors (``DEFAULT_DETECTORS`` by default), once per worker."""
    return [build_detector(n, configs) for n in (names or list(DEFAULT_DETECTORS))]
