"""The dark-frame lift: dark frames are lifted, keep their order of grey levels, and are not posterised."""

from __future__ import annotations

import numpy as np

from detectors.imaging import brightened


def gradient(top: int) -> np.ndarray:
    """A 64x256 RGB frame whose columns run through grey levels 0..top."""
    row = np.linspace(0, top, 256).round().astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], 64, axis=0), 3, axis=2)


def test_a_bright_enough_frame_comes_back_unchanged() -> None:
    frame = gradient(200)
    assert brightened(frame, 45.0, 100.0) is frame


def test_a_dark_frame_is_lifted_towards_the_target_and_keeps_its_order() -> None:
    dark = gradient(60)  # mean ~30, under the 45 that counts as dark
    lifted = brightened(dark, 45.0, 100.0)
    assert 30 < lifted.mean() <= 100
    levels = lifted[0, :, 0].astype(int)
    assert np.all(np.diff(levels) >= 0), "a gamma curve never swaps two grey levels"


def test_a_nearly_black_frame_is_not_posterised() -> None:
    dark = gradient(8)  # mean ~4: the curve would want an exponent far below 0.5
    lifted = brightened(dark, 45.0, 100.0)
    steps = np.unique(lifted[0, :, 0].astype(int))
    assert steps[1] - steps[0] <= 16, "one grey level above black must not jump further than a 0.5 gamma takes it"
