"""The explicit registry builds every detector; unknown names are errors, not log lines."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import REGISTRY, SIGNAL_COLUMNS, Detector, FrameBatch, Signals, build_detector, build_detectors


def test_every_registered_detector_builds_and_answers_its_documented_columns() -> None:
    batch = FrameBatch(np.zeros((3, 120, 160, 3), np.uint8), np.array([0, 66, 133]))
    detectors = build_detectors()
    assert [d.name for d in detectors] == list(REGISTRY)
    parts = []
    for d in detectors:
        assert isinstance(d, Detector)
        assert d.version
        s = d(batch)
        assert set(s.columns) == set(SIGNAL_COLUMNS[d.name])
        parts.append(s)
    merged = Signals.merge(parts)
    assert len(merged) == 3


def test_unknown_detector_is_an_error() -> None:
    with pytest.raises(KeyError, match="unknown detector 'eyes'"):
        build_detector("eyes")
