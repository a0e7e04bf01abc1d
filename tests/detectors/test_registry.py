"""The explicit registry builds every detector; unknown names are errors, not log lines."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import (
    DEFAULT_DETECTORS,
    REGISTRY,
    SIGNAL_COLUMNS,
    Detector,
    FrameBatch,
    Signals,
    build_detector,
    build_detectors,
)
from detectors.face_analysis import DESCRIPTOR_COLUMNS


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_detector_builds_and_answers_its_documented_columns(name: str) -> None:
    batch = FrameBatch(np.zeros((3, 120, 160, 3), np.uint8), np.array([0, 66, 133]))
    d = build_detector(name)
    assert isinstance(d, Detector)
    assert d.name == name
    assert d.version
    s = d(batch)
    assert set(s.columns) == set(SIGNAL_COLUMNS[name])
    assert len(s) == 3


def test_the_default_set_gives_every_column_once() -> None:
    batch = FrameBatch(np.zeros((3, 120, 160, 3), np.uint8), np.array([0, 66, 133]))
    detectors = build_detectors()
    assert [d.name for d in detectors] == list(DEFAULT_DETECTORS)
    merged = Signals.merge([d(batch) for d in detectors])
    every = {c for name in ("face_presence", "gaze", "quality") for c in SIGNAL_COLUMNS[name]}
    assert set(merged.columns) == every | set(DESCRIPTOR_COLUMNS)
    assert len(merged) == 3


def test_unknown_detector_is_an_error() -> None:
    with pytest.raises(KeyError, match="unknown detector 'eyes'"):
        build_detector("eyes")
