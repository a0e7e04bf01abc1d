"""The thumbnail strip: keyframes only, one tile per slot of time, the gaps filled from the tile before."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.thumbnails import TILE_WIDTH, every_s_for, keyframe_thumbnails
from tests.support.media import write_video


@pytest.mark.parametrize("codec", ["libx264", "libvpx"])
def test_each_slot_shows_the_keyframe_of_its_moment(tmp_path: Path, codec: str) -> None:
    # 30 s at 4 fps with a keyframe every 7 s: slots of 5 s, one without a keyframe of its own
    name = "v.mp4" if codec == "libx264" else "v.webm"
    video = write_video(tmp_path / name, codec=codec, fps=4, frames=120, gop=28)
    with video.open("rb") as recording:
        made = keyframe_thumbnails(recording, 30.0)
    assert made is not None
    sprite, index = made
    assert (index.every_s, index.count, index.columns, index.tile_width) == (5.0, 6, 6, TILE_WIDTH)
    assert index.tile_height == 120 * TILE_WIDTH // 160
    image = cv2.imdecode(np.frombuffer(sprite, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (index.tile_height, 6 * TILE_WIDTH)
    tiles = [image[:, i * TILE_WIDTH : (i + 1) * TILE_WIDTH].astype(int) for i in range(6)]
    # keyframes at 0, 7, 14, 21 and 28 s land in slots 0, 1, 2, 4 and 5; slot 3 repeats slot 2
    assert np.abs(tiles[3] - tiles[2]).mean() < 5  # the same frame, up to JPEG
    assert all(np.abs(tiles[i] - tiles[j]).mean() > 20 for i, j in ((0, 1), (1, 2), (3, 4), (4, 5)))  # other frames


def test_long_sessions_get_coarser_slots() -> None:
    assert every_s_for(24) == 5.0 and every_s_for(90 * 60) == 30.0 and every_s_for(8 * 3600) == 120.0
