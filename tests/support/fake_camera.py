"""A camera for Chromium's fake capture device: a `.y4m` file built from the sample session's real faces.

Chromium started with `--use-fake-device-for-media-stream --use-file-for-fake-video-capture=<file.y4m>` serves
the file's frames to `getUserMedia` at its frame rate, looping at the end. The file shows the candidate (a real
face that scikit-image ships), then a stretch where the face leaves (a cup, then a cat), then the candidate
again: `FakeCamera.no_face` says when, in seconds from the first frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from proctor.samples import build_sample_session

FPS = 10


@dataclass(frozen=True)
class FakeCamera:
    path: Path
    duration_s: float
    no_face: tuple[float, float]  # [start, end) in seconds of the file


def write_y4m(path: Path, frames: Iterator[npt.NDArray[np.uint8]], width: int, height: int, fps: int) -> int:
    """Write I420 frames (each `height * 3 // 2` rows of `width` bytes) as YUV4MPEG2; returns the frame count."""
    count = 0
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(frame.tobytes())
            count += 1
    return count


def face_leaves_camera(directory: Path, width: int = 640, height: int = 480) -> FakeCamera:
    """The sample session's candidate and its no-face stretch (the cup and the cat), without its scenes of two
    people or a turned head, so that the only flag a recording of it should raise is no_face. At 640x480 a
    MediaRecorder writes a few hundred kB a second: a minute spans several 5 MiB upload parts."""
    sample = build_sample_session(directory, duration_s=60.0, fps=FPS, width=width, height=height, with_events=False)
    keep = [i for i in sample.intervals if i.faces == 0 or (i.faces == 1 and i.looking_away is False)]
    kept_frames: list[npt.NDArray[np.uint8]] = []
    no_face: tuple[float, float] | None = None
    with av.open(str(sample.video_path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            t = index / FPS
            interval = next((i for i in keep if i.start_s <= t < i.end_s), None)
            if interval is None:
                continue
            if interval.faces == 0:
                start = len(kept_frames) / FPS if no_face is None else no_face[0]
                no_face = (start, (len(kept_frames) + 1) / FPS)
            kept_frames.append(frame.to_ndarray(format="yuv420p"))
    assert no_face is not None, "the sample session lost its no-face stretch"
    path = directory / "camera.y4m"
    count = write_y4m(path, iter(kept_frames), width, height, FPS)
    return FakeCamera(path, count / FPS, no_face)
