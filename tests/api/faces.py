"""Enrolment files for the API tests, built from the real faces that scikit-image and matplotlib ship.

The astronaut (skimage) and Grace Hopper (matplotlib) are two real people; everything that should be refused
is made from them the way it happens in the field: nobody in view, two people, too far, too dark, out of focus.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.stream import VideoStream
from matplotlib import cbook
from numpy.typing import NDArray
from skimage import data

Image = NDArray[np.uint8]


def astronaut() -> Image:
    return np.ascontiguousarray(data.astronaut())


def grace() -> Image:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))


def wall(width: int = 640, height: int = 480) -> Image:
    """A lit, faceless wall: a soft colour gradient."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.dstack([90 + 80 * xx / width, 100 + 60 * yy / height, np.full((height, width), 120.0)]).astype(np.uint8)


def write_photo(path: Path, image: Image) -> Path:
    """Encode ``image`` (RGB) as JPEG or PNG by the path's suffix."""
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def write_clip(path: Path, image: Image, *, seconds: float = 2.0, fps: int = 15) -> Path:
    """An H.264 MP4 of ``image`` under a slow zoom (a still face, as a phone would film it held steady)."""
    h, w = (s - s % 2 for s in image.shape[:2])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        frames = round(seconds * fps)
        for i in range(frames):
            zoom = 1.0 + 0.04 * i / max(1, frames - 1)
            scaled = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
            y0, x0 = (scaled.shape[0] - h) // 2, (scaled.shape[1] - w) // 2
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scaled[y0 : y0 + h, x0 : x0 + w]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _unusable(transform: Callable[[Image], Image]) -> Callable[[Path], Path]:
    return lambda tmp: write_photo(tmp / "photo.jpg", transform(astronaut()))


def _random_bytes(tmp: Path) -> Path:
    path = tmp / "photo.jpg"
    path.write_bytes(np.random.default_rng(17).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return path


REFUSED_PHOTOS: dict[str, Callable[[Path], Path]] = {
    "enrolment_no_face": lambda tmp: write_photo(tmp / "wall.png", wall()),
    "enrolment_multiple_faces": _unusable(lambda a: np.ascontiguousarray(np.hstack([a, a]))),
    "enrolment_face_too_small": _unusable(
        lambda a: np.asarray(cv2.resize(a, (256, 256), interpolation=cv2.INTER_AREA))
    ),
    "enrolment_too_dark": _unusable(lambda a: (255 * (a / 255.0) ** 8).astype(np.uint8)),
    "enrolment_blurred": _unusable(lambda a: np.asarray(cv2.GaussianBlur(a, (0, 0), 3.0))),
    "enrolment_unreadable": _random_bytes,
}
"""Refusal code -> a photo file that earns it."""
