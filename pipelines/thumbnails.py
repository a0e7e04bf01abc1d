"""A strip of thumbnails over a whole recording, for the reviewer's timeline: one JPEG sprite and its index.

Only keyframes are decoded, and only the first of each slot of `every_s` seconds, so a 90-minute recording
costs at most a few hundred small decodes (one per tile) rather than a second pass over every frame. A slot
with no keyframe of its own (keyframes further apart than `every_s`) repeats the one before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import IO, Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray

TILE_WIDTH = 160
COLUMNS = 10
JPEG_QUALITY = 70


@dataclass(frozen=True)
class ThumbnailIndex:
    """Where each thumbnail sits in the sprite: tile `i` covers [i * every_s, (i + 1) * every_s)."""

    every_s: float
    count: int
    columns: int
    tile_width: int
    tile_height: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def every_s_for(duration_s: float) -> float:
    """About 200 thumbnails at most: every 5 s up to 16 minutes, then coarser (every 30 s for 90 minutes)."""
    for step in (5.0, 10.0, 15.0, 30.0, 60.0):
        if duration_s / step <= 200:
            return step
    return 120.0


def keyframe_thumbnails(recording: IO[bytes], duration_s: float) -> tuple[bytes, ThumbnailIndex] | None:
    """The sprite (JPEG) and its index; None when no keyframe could be decoded."""
    every_s = every_s_for(duration_s)
    slots = max(1, int(np.ceil(duration_s / every_s)))
    tiles: list[NDArray[np.uint8] | None] = [None] * slots

    def place(frame: av.VideoFrame, time_base: Fraction) -> None:
        # Frames from the codec context carry their pts in the stream's time base, but no time of their own.
        slot = int(float(frame.pts * time_base) // every_s) if frame.pts is not None else -1
        if 0 <= slot < slots and tiles[slot] is None:
            image = frame.to_ndarray(format="rgb24")
            height = max(1, round(image.shape[0] * TILE_WIDTH / image.shape[1]))
            tiles[slot] = np.asarray(
                cv2.resize(image, (TILE_WIDTH, height), interpolation=cv2.INTER_AREA), dtype=np.uint8
            )

    with av.open(recording, mode="r") as container:
        stream = container.streams.video[0]
        time_base = stream.time_base or Fraction(1, 1000)
        decoder = stream.codec_context
        decoder.skip_frame = "NONKEY"
        wanted: set[int] = set()
        for packet in container.demux(stream):
            # Only the first keyframe of each slot is decoded: keyframes every 2 s and tiles every 30 s make
            # one decode in fifteen. A keyframe needs no other frame, so the others are never sent.
            if not packet.is_keyframe or packet.pts is None or packet.time_base is None:
                continue
            slot = int(float(packet.pts * packet.time_base) // every_s)
            if slot in wanted or not 0 <= slot < slots:
                continue
            wanted.add(slot)
            for frame in decoder.decode(packet):
                place(frame, time_base)
        for frame in decoder.decode(None):
            place(frame, time_base)
    first = next((t for t in tiles if t is not None), None)
    if first is None:
        return None
    height = first.shape[0]
    filled: list[NDArray[np.uint8]] = []
    for tile in tiles:
        usable = tile if tile is not None and tile.shape == first.shape else None
        filled.append(usable if usable is not None else (filled[-1] if filled else first))
    columns = min(COLUMNS, slots)
    rows = -(-slots // columns)
    sprite = np.zeros((rows * height, columns * TILE_WIDTH, 3), np.uint8)
    for i, tile in enumerate(filled):
        row, column = divmod(i, columns)
        sprite[row * height : (row + 1) * height, column * TILE_WIDTH : (column + 1) * TILE_WIDTH] = tile
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(sprite, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        return None
    return jpeg.tobytes(), ThumbnailIndex(every_s, slots, columns, TILE_WIDTH, height)
