"""Seam validation: tables of inputs with the expected exception (None = valid)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors import FrameBatch, Signals

F = np.zeros((2, 16, 16, 3), np.uint8)
T = np.array([0, 66], np.int64)


@pytest.mark.parametrize(
    ("frames", "timestamps", "error"),
    [
        (F, T, None),
        (F, [0, 66], None),
        (F[:0], np.zeros(0, np.int64), None),
        (F.astype(np.float32), T, "dtype uint8"),
        (F[..., :1], T, r"\(N, H, W, 3\)"),
        (F[0], T[:1], r"\(N, H, W, 3\)"),
        (F.tolist(), T, "numpy array"),
        (np.zeros((2, 4, 4, 3), np.uint8), T, "at least 8x8"),
        (F, np.array([0, 0]), "strictly increasing"),
        (F, np.array([66, 0]), "strictly increasing"),
        (F, np.array([0.0, 66.0]), "integer milliseconds"),
        (F, np.array([0]), "one timestamp per frame"),
        (F, np.array([[0, 66]]), r"shape \(N,\)"),
    ],
)
def test_frame_batch_validation(frames: Any, timestamps: Any, error: str | None) -> None:
    if error is None:
        batch = FrameBatch(frames, timestamps)
        assert batch.timestamps_ms.dtype == np.int64
        assert len(batch) == len(timestamps)
    else:
        with pytest.raises(ValueError, match=error):
            FrameBatch(frames, timestamps)


@pytest.mark.parametrize(
    ("timestamps", "columns", "error"),
    [
        (T, {"a": [1.0, np.nan]}, None),
        (T, {"a": np.array([1, 0], np.int64), "b": np.array([True, False])}, None),
        (T, {}, None),
        (T, {"a": [1.0]}, "expected column 'a' of shape"),
        (T, {"": [1.0, 2.0]}, "non-empty string"),
        (T, {"a": ["x", "y"]}, "numeric column"),
        (np.array([5, 1]), {"a": [1.0, 2.0]}, "strictly increasing"),
    ],
)
def test_signals_validation(timestamps: Any, columns: Any, error: str | None) -> None:
    if error is None:
        s = Signals(timestamps, columns)
        assert all(v.dtype == np.float64 for v in s.columns.values())
    else:
        with pytest.raises(ValueError, match=error):
            Signals(timestamps, columns)


def test_signals_concat_joins_chunks_in_time_order() -> None:
    a = Signals(np.array([0, 66]), {"x": [1.0, 2.0]})
    b = Signals(np.array([133, 200]), {"x": [np.nan, 4.0]})
    joined = Signals.concat([a, b])
    np.testing.assert_array_equal(joined.timestamps_ms, [0, 66, 133, 200])
    np.testing.assert_array_equal(joined["x"], [1.0, 2.0, np.nan, 4.0])


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ([], "at least one"),
        ([Signals(T, {"x": [1.0, 2.0]}), Signals(T + 200, {"y": [1.0, 2.0]})], "expected columns"),
        ([Signals(T + 200, {"x": [1.0, 2.0]}), Signals(T, {"x": [1.0, 2.0]})], "strictly increasing"),
        ([Signals(T, {"x": [1.0, 2.0]}), Signals(T, {"x": [1.0, 2.0]})], "strictly increasing"),
    ],
)
def test_signals_concat_refuses_bad_parts(parts: list[Signals], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Signals.concat(parts)


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ([Signals(T, {"x": [1.0, 2.0]}), Signals(T, {"y": [3.0, 4.0]})], None),
        ([], "at least one"),
        ([Signals(T, {"x": [1.0, 2.0]}), Signals(T, {"x": [3.0, 4.0]})], "distinct column names"),
        ([Signals(T, {"x": [1.0, 2.0]}), Signals(T + 1, {"y": [3.0, 4.0]})], "identical timestamps"),
    ],
)
def test_signals_merge(parts: list[Signals], error: str | None) -> None:
    if error is None:
        assert sorted(Signals.merge(parts).columns) == ["x", "y"]
    else:
        with pytest.raises(ValueError, match=error):
            Signals.merge(parts)


def test_unknown_column_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="has no column 'z'"):
        Signals(T, {"x": [1.0, 2.0]})["z"]
