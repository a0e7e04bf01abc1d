"""The typed seams between the pipeline and the detectors.

Frames go in as a ``FrameBatch``; every detector answers with ``Signals``, one row per frame.
The pipeline runs detectors over time chunks of a session in parallel and joins the answers with
``Signals.concat`` (chunks in time order) and ``Signals.merge`` (detectors side by side), so both
types check their invariants on construction: a bad chunk fails where it is made, not three stages
later in the segmenter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

__all__ = ["Detector", "FrameBatch", "Signals"]


def _strictly_increasing_int64(timestamps_ms: object, what: str) -> NDArray[np.int64]:
    ts = np.asarray(timestamps_ms)
    if ts.ndim != 1:
        raise ValueError(f"{what}: expected timestamps_ms of shape (N,), found shape {ts.shape}")
    if ts.size and not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"{what}: expected integer milliseconds (int64), found dtype {ts.dtype}")
    ts = ts.astype(np.int64, copy=False)
    if ts.size > 1 and not np.all(np.diff(ts) > 0):
        bad = int(np.argmax(np.diff(ts) <= 0))
        raise ValueError(
            f"{what}: expected strictly increasing timestamps_ms, found {ts[bad]} then {ts[bad + 1]} "
            f"at index {bad}; sort the frames or drop duplicates before batching"
        )
    return ts


@dataclass(frozen=True)
class FrameBatch:
    """A run of decoded frames: ``frames`` (N, H, W, 3) uint8 RGB and their times in ms.

    RGB, not OpenCV's BGR, because every model here was trained on RGB and a silent channel swap
    degrades detection on darker skin first. Timestamps are the presentation times the segmenter
    will report, so they must increase strictly.
    """

    frames: NDArray[np.uint8]
    timestamps_ms: NDArray[np.int64]

    def __post_init__(self) -> None:
        frames = self.frames
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"FrameBatch: expected frames as a numpy array, found {type(frames).__name__}")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"FrameBatch: expected frames of shape (N, H, W, 3), found {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"FrameBatch: expected frames of dtype uint8 (RGB), found {frames.dtype}")
        if frames.shape[1] < 8 or frames.shape[2] < 8:
            raise ValueError(
                f"FrameBatch: expected frames at least 8x8 pixels, found {frames.shape[2]}x{frames.shape[1]}"
            )
        ts = _strictly_increasing_int64(self.timestamps_ms, "FrameBatch")
        if ts.shape[0] != frames.shape[0]:
            raise ValueError(f"FrameBatch: expected one timestamp per frame ({frames.shape[0]}), found {ts.shape[0]}")
        object.__setattr__(self, "timestamps_ms", ts)
        # OpenCV refuses negative strides (a mirrored view); copy only when needed.
        object.__setattr__(self, "frames", np.ascontiguousarray(frames))

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


@dataclass(frozen=True)
class Signals:
    """Per-frame measurements: ``columns[name][i]`` belongs to frame ``timestamps_ms[i]``.

    Every column is a float64 array of the same length as ``timestamps_ms``. NaN means "unknown"
    (no face, unusable landmarks, a measurement that was not taken on this frame), never "zero"
    or "away": the segmenter must be able to tell a missing measurement from a bad one.
    """

    timestamps_ms: NDArray[np.int64]
    columns: Mapping[str, NDArray[np.float64]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ts = _strictly_increasing_int64(self.timestamps_ms, "Signals")
        cols: dict[str, NDArray[np.float64]] = {}
        for name, values in self.columns.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"Signals: expected non-empty string column names, found {name!r}")
            arr = np.asarray(values)
            if arr.shape != ts.shape:
                raise ValueError(
                    f"Signals: expected column {name!r} of shape {ts.shape} (one value per timestamp), "
                    f"found {arr.shape}"
                )
            if not (
                np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_
            ):
                raise ValueError(f"Signals: expected numeric column {name!r}, found dtype {arr.dtype}")
            cols[name] = arr.astype(np.float64, copy=False)
        object.__setattr__(self, "timestamps_ms", ts)
        object.__setattr__(self, "columns", cols)

    def __len__(self) -> int:
        return int(self.timestamps_ms.shape[0])

    def __getitem__(self, name: str) -> NDArray[np.float64]:
        if name not in self.columns:
            raise KeyError(f"Signals has no column {name!r}; it has {sorted(self.columns)}")
        return self.columns[name]

    @classmethod
    def concat(cls, parts: Sequence[Signals]) -> Signals:
        """Join chunks of one session in time order; all chunks must carry the same columns."""
        if not parts:
            raise ValueError("Signals.concat: expected at least one Signals, found none")
        names = set(parts[0].columns)
        for i, p in enumerate(parts[1:], start=1):
            if set(p.columns) != names:
                raise ValueError(
                    f"Signals.concat: expected columns {sorted(names)} in every part, "
                    f"found {sorted(p.columns)} in part {i}"
                )
        ts = np.concatenate([p.timestamps_ms for p in parts])
        cols = {n: np.concatenate([p.columns[n] for p in parts]) for n in sorted(names)}
        # The constructor rejects overlapping or out-of-order chunks.
        return cls(ts, cols)

    @classmethod
    def merge(cls, parts: Sequence[Signals]) -> Signals:
        """Put several detectors' answers for the same frames side by side."""
        if not parts:
            raise ValueError("Signals.merge: expected at least one Signals, found none")
        ts = parts[0].timestamps_ms
        cols: dict[str, NDArray[np.float64]] = {}
        for i, p in enumerate(parts):
            if not np.array_equal(p.timestamps_ms, ts):
                raise ValueError(f"Signals.merge: expected identical timestamps in every part, part {i} differs")
            dup = set(cols) & set(p.columns)
            if dup:
                raise ValueError(f"Signals.merge: expected distinct column names, found {sorted(dup)} twice")
            cols.update(p.columns)
        return cls(ts, cols)


@runtime_checkable
class Detector(Protocol):
    """What the pipeline calls: built once per worker (models load in ``__init__``), then called per batch."""

    name: str
    version: str

    def __call__(self, batch: FrameBatch) -> Signals: ...
