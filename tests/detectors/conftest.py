"""Real faces that the test dependencies ship, and detectors built once per test session."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from matplotlib import cbook
from numpy.typing import NDArray
from skimage import data

from detectors import FacePresenceDetector, FrameBatch, GazeConfig, GazeDetector

Image = NDArray[np.uint8]

# MediaPipe legacy FaceDetection (model 0) on the same images, measured once: x0, y0, x1, y1 in px.
ASTRONAUT_BOX = (177.6, 82.9, 272.9, 178.2)
GRACE_BOX = (171.4, 146.9, 365.8, 341.4)


@pytest.fixture(scope="session")
def astronaut() -> Image:
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def grace() -> Image:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))


def empty_room() -> Image:
    """A generated scene with no face: a lit wall, a shelf edge and sensor noise (the other scikit-image photos
    are reserved for the held-out evaluation)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:480, 0:640]
    wall = 150 + 40 * np.sin(x / 90.0) + 25 * (y / 480.0)
    room = np.repeat(wall[:, :, None], 3, axis=2) * np.array([1.0, 0.95, 0.85])
    room[300:320, :] = (90, 70, 50)  # a shelf
    room += rng.normal(0, 6, room.shape)
    return np.ascontiguousarray(np.clip(room, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session", params=["empty room", "chelsea"])
def no_face(request: pytest.FixtureRequest) -> Image:
    """Negatives: a room with no one in it, and the demo's cat (which must not count as a candidate)."""
    if request.param == "empty room":
        return empty_room()
    return np.ascontiguousarray(data.chelsea())


@pytest.fixture(scope="session")
def presence() -> FacePresenceDetector:
    return FacePresenceDetector()


@pytest.fixture(scope="session")
def gaze() -> GazeDetector:
    return GazeDetector(GazeConfig(iris_every_ms=0))


def darkened(image: Image, gamma: float) -> Image:
    """``image`` through a gamma curve: below 1, darker (0.25 is the benchmarks' darkest lighting)."""
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 / gamma), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(lut[image])


def batch_of(*images: Image) -> FrameBatch:
    """Frames 66 ms apart; images must share a size."""
    return FrameBatch(np.stack(images), np.arange(len(images), dtype=np.int64) * 66)


def face_crop(image: Image, box: tuple[float, float, float, float], margin: float = 0.6) -> Image:
    """The face in ``box`` with ``margin`` of its size around it, for building composites."""
    x0, y0, x1, y1 = box
    m = margin * max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    xa, ya = max(0, int(x0 - m)), max(0, int(y0 - m))
    xb, yb = min(w, int(x1 + m)), min(h, int(y1 + m))
    return np.ascontiguousarray(image[ya:yb, xa:xb])


def paste(canvas: Image, patch: Image, x: int, y: int, size: int) -> tuple[int, int, int, int]:
    """Resize ``patch`` to ``size`` px wide and paste it at (x, y); return where it went."""
    h = round(patch.shape[0] * size / patch.shape[1])
    canvas[y : y + h, x : x + size] = cv2.resize(patch, (size, h), interpolation=cv2.INTER_AREA)
    return x, y, x + size, y + h
