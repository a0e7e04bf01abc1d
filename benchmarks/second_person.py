"""A second person in a dark room: is the second face still found, and can it still raise multiple_faces?

Run from the repository root with no arguments: ``python benchmarks/second_person.py``. It reads the same
sessions as ``benchmarks/accuracy.py`` (``../shared/data`` and the built sessions, staged and rendered under
``.devset-cache`` when missing) and takes every stretch labelled with two or more faces, outside the cut bands,
at the pipeline's 5 fps. Each stretch runs through the detectors (face analysis and frame quality, one call a
stretch: they keep nothing between calls) as recorded, under the lighting variants of
``benchmarks.session_signals.lighting_variants`` and in ``benchmarks/fairness.py``'s dim room (the camera's gain
turning the sensor noise of a dim scene up: ``devset_render.dim_room``).

Per variant it prints the frames where at least two faces were found, and how many of those read as too dark.
Until 2026-12-06 a too-dark frame made multiple_faces unknown even where two faces were found on it, so the
last column is what that rule hid: a helper in a dim room was almost never flagged. ``pipelines.evidence`` now
counts two faces in a dark frame as two faces. The other side, a second face made up in the dark on one person,
is ``benchmarks/fairness.py``'s false multiple_faces column.

Last line: ``RESULT second_person frames=<n> found=<share as recorded> found_dark=<share at gamma 0.25>
dark_share=<share of the gamma 0.25 frames with two faces found that read as too dark>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and shadow the packages of the same name;
# put this checkout first instead, so a worktree measures its own code and not an installed copy.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools
import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks import devset
from benchmarks.accuracy import built_sessions, shared_sessions
from benchmarks.session_signals import ignored, lighting_variants, sampled_frames
from detectors import FrameBatch, FrameQualityDetector
from detectors.face_analysis import FaceAnalysisDetector
from pipelines.decode import DecodeOptions

DARKEST = "gamma 0.25"


@dataclass
class Count:
    frames: int = 0
    found: int = 0  # frames with at least two faces found
    found_dark: int = 0  # ... of which the frame reads as too dark


def stretches() -> list[tuple[str, float, NDArray[np.int64], NDArray[np.uint8]]]:
    """(session, start s, timestamps ms, RGB frames) of every stretch labelled with two or more faces."""
    out = []
    for video, truth, _, _ in shared_sessions() + built_sessions():
        wanted = [i for i in truth["intervals"] if i["faces"] >= 2]
        if not wanted:
            continue
        frames = [(t, f) for t, f in sampled_frames(video, DecodeOptions().sample_fps) if not ignored(truth, t)]
        for iv in wanted:
            inside = [(t, f) for t, f in frames if iv["start_s"] <= t / 1000 < iv["end_s"]]
            if inside:
                ts = np.array([t for t, _ in inside], np.int64)
                out.append((video.stem, float(iv["start_s"]), ts, np.stack([f for _, f in inside])))
    return out


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)
    start = time.perf_counter()
    analysis, quality = FaceAnalysisDetector(), FrameQualityDetector()
    counter = itertools.count()  # the dim room's noise: a new draw for every frame
    variants = lighting_variants() | {"dim room": lambda x: devset.relight(x, "dim", None, 0.0, next(counter))}
    counts = {name: Count() for name in variants}
    weakest: list[tuple[float, str]] = []
    for session, begin, ts, frames in stretches():
        for name, change in variants.items():
            batch = FrameBatch(np.stack([np.ascontiguousarray(change(f)) for f in frames]), ts)
            two = analysis(batch)["face_count"] >= 2
            dark = quality(batch)["too_dark"] > 0
            c = counts[name]
            c.frames, c.found, c.found_dark = (
                c.frames + len(ts),
                c.found + int(two.sum()),
                c.found_dark + int((two & dark).sum()),
            )
            if name == DARKEST:
                weakest.append((float(two.mean()), f"{session} {begin:.1f} s"))
    print("## Frames labelled with two or more faces (5 fps, cut bands skipped)\n")
    print("| variant | frames | two or more faces found | of those, read as too dark (unknown before 2026-12-06) |")
    print("|---|---|---|---|")
    for name, c in counts.items():
        print(f"| {name} | {c.frames} | {c.found} = {c.found / c.frames:.3f} | {c.found_dark} |")
    print(
        f"\nStretches where the second face is found least at {DARKEST}: "
        + ", ".join(f"{where} ({share:.2f})" for share, where in sorted(weakest)[:5])
    )
    print(f"\n(ran in {time.perf_counter() - start:.0f} s)")
    lit, darkest = counts["original"], counts[DARKEST]
    print(
        f"RESULT second_person frames={lit.frames} found={lit.found / lit.frames:.3f} "
        f"found_dark={darkest.found / darkest.frames:.3f} "
        f"dark_share={darkest.found_dark / max(darkest.found, 1):.3f}"
    )


if __name__ == "__main__":
    main()
