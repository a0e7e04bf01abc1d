"""Which faces found are people at the desk: a picture on the wall is not, nor is a face too far away to be anyone
sitting there.

Pure functions over a session's signals. ``pipelines.evidence`` reads them to flag an empty seat and two people
in view; ``pipelines.identity`` reads them to leave a face seen beside another out of who the candidate is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detectors import Signals

FloatArray = NDArray[np.float64]
SPOT_BLOCK = 4096
"""Places compared with every remembered spot at once (``_at_a_spot``): bounds the comparison's memory."""


def face_share(signals: Signals) -> FloatArray:
    """Per frame, the largest face's size over the frame's longer side (the frame's size is the face's centre in
    pixels over its centre in frame widths and heights); NaN where that is not known."""
    n = len(signals)
    needed = ("face_size_px", "face_x_px", "face_y_px", "face_cx", "face_cy")
    if not all(c in signals.columns for c in needed):
        return np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = signals["face_x_px"] / signals["face_cx"]
        height = signals["face_y_px"] / signals["face_cy"]
    longer = np.fmax(width, height)
    known = np.isfinite(longer) & (longer > 0) & np.isfinite(signals["face_size_px"])
    share = np.full(n, np.nan)
    share[known] = signals["face_size_px"][known] / longer[known]
    return share


@dataclass(frozen=True)
class EmptySeat:
    """A lone face too small to be anyone at the desk leaves the seat empty.

    The candidate sits at their webcam. A face under ``max_face_share`` of the frame's longer side is a head
    (about 15 cm wide) some 2.5 m or more from a webcam with a 65 degree field of view: someone across the room, a
    picture, or the tiled pass's small-face detector firing on the scene. Alone in view, it is not the candidate:
    the frame is no face. On the development sessions the smallest candidate face was 0.14 of that side (and 0.085
    with the camera farther back, ``benchmarks/capture.py``), while mirrored empty offices showed "faces" of 0.035
    that the tiled pass carried for 2 s, splitting no_face stretches that should have been flagged. With other
    faces in view nothing changes: a small second face still counts.

    The geometry assumes a webcam at the desk. A wide-angle camera, or one set back on a shelf, shows the candidate
    themselves that small for the whole session. So the size is also read against the session's own: a lone face
    is an empty seat only where it is also under ``max_share_of_seated`` of the size the candidate has when seated
    (the ``seated_percentile`` of the largest face's share over the frames that show a face; the candidate is in
    view for most of an exam, a far face or a picture only while they are away).
    """

    max_face_share: float = 0.05
    max_share_of_seated: float = 0.5
    seated_percentile: float = 90.0


def far_alone_frames(signals: Signals, rule: EmptySeat) -> NDArray[np.bool_]:
    """Frames whose one face is too small to be anyone at the desk (``EmptySeat``): under the rule's share of the
    frame, and under its share of the candidate's own size when seated."""
    share = face_share(signals)
    seen = (signals["face_count"] >= 1) & np.isfinite(share)
    if not np.any(seen):
        return np.zeros(len(signals), dtype=bool)
    seated = float(np.percentile(share[seen], rule.seated_percentile))
    limit = min(rule.max_face_share, rule.max_share_of_seated * seated)
    return np.asarray((signals["face_count"] == 1) & np.isfinite(share) & (share < limit), dtype=bool)


def not_people(signals: Signals, fixtures: Fixtures, seat: EmptySeat) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """The counted faces that are not people, as the flags read them: (frames whose second face is a picture on the
    wall, frames whose only face is a picture left alone or too small to be anyone at the desk: an empty seat)."""
    fixed, only_fixture = fixture_frames(signals, fixtures)
    return fixed, only_fixture | far_alone_frames(signals, seat)


@dataclass(frozen=True)
class Fixtures:
    """A face that never moves while the candidate does is a picture on the wall, not a second person.

    A real person, however still they sit, shifts over seconds; a poster or a photo does not move at all while
    the candidate in front of it does. So a second face whose centre stays within ``still`` of its own size (or
    ``jitter_px``) and whose size stays within ``still_scale`` (or ``still_px``) over ``window_ms``, while the
    tracked face moved at least ``moving_px``, and which is at most ``max_size_ratio`` of the largest face's size
    (a picture behind the candidate, not someone beside them), is a fixture: it does not make the frame "multiple
    faces", and when it is the only face left, the seat is empty. Once a spot is shown to hold a fixture, a face
    at that spot and size is the same picture for the whole session, also while the candidate sits still (a
    person who sits down there is not at exactly the picture's place and size). It does not help where nothing
    ever moves: a still candidate in front of a still picture (a spliced photo) stays "two faces".

    A face the detector did not count because it sits in a picture's frame (``picture_face_*`` columns,
    ``detectors.plausibility.framed``) marks its spot the same way once it was seen there on ``framed_min_frames``
    frames: the frame already told it apart, so it needs no stillness test. That picture left alone in view
    after the candidate goes is an empty seat, not a candidate. A lone face matches a spot within ``alone_scale``
    of its size: it may come from another detection pass than the one that placed the spot (the short-range
    model's box of a small face is ~13% smaller than the full-range model's).
    """

    window_ms: int = 4000
    still: float = 0.15
    still_scale: float = 1.03
    still_px: float = 2.0
    jitter_px: float = 4.0
    """Re-detections of a picture's face move its box by a model pixel or two whatever the face's size: a face
    under 64 px is found by the tiled pass, which sees a 400 px tile of a 640x480 frame at 192 px, so two of its
    pixels are about 4 frame pixels. Without this floor a picture 18 px across (dev12's poster with the camera
    farther back, ``benchmarks/capture.py``) jittered 2.7 px, over ``still`` of its size, and was a second person."""
    moving_px: float = 8.0
    max_size_ratio: float = 0.6
    min_coverage: float = 0.8
    framed_min_frames: int = 3
    alone_scale: float = 1.25

    @property
    def spot_scale(self) -> float:
        """How far a second face's size may differ from a remembered spot's and still be that picture: a little
        over ``still_scale``."""
        return self.still_scale * 1.05


def _spots(x: FloatArray, y: FloatArray, size: FloatArray) -> FloatArray:
    """Distinct (x, y, size) spots, rounded to a pixel: a picture seen on thousands of frames is a few spots."""
    return np.unique(np.round(np.stack([x, y, size], axis=1)), axis=0) if len(x) else np.zeros((0, 3))


def _near(
    spots: FloatArray, x: FloatArray, y: FloatArray, size: FloatArray, rule: Fixtures, scale: float
) -> NDArray[np.bool_]:
    """Which spots (rows) are at which places (columns): within twice ``still`` of the spot's size (or
    ``jitter_px``), and of the size within the factor ``scale``."""
    reach = 2 * np.maximum(rule.still * spots[:, 2:3], rule.jitter_px)
    near = np.maximum(np.abs(spots[:, 0:1] - x), np.abs(spots[:, 1:2] - y)) <= reach
    with np.errstate(divide="ignore", invalid="ignore"):
        same_size = np.abs(np.log(spots[:, 2:3] / size)) <= np.log(scale)
    return np.asarray(near & same_size, dtype=bool)


def _at_a_spot(
    spots: FloatArray, x: FloatArray, y: FloatArray, size: FloatArray, rule: Fixtures, scale: float
) -> NDArray[np.bool_]:
    """Per place, whether any spot is there (``_near``), a block of places at a time: a long session can hold
    thousands of spots."""
    out = np.zeros(len(x), dtype=bool)
    if len(spots):
        for at in range(0, len(x), SPOT_BLOCK):
            block = slice(at, at + SPOT_BLOCK)
            out[block] = _near(spots, x[block], y[block], size[block], rule, scale).any(axis=0)
    return out


def framed_spots(signals: Signals, rule: Fixtures) -> FloatArray:
    """Spots where a face was not counted as a framed picture on at least ``framed_min_frames`` frames."""
    columns = ("picture_face_x_px", "picture_face_y_px", "picture_face_size_px")
    if not all(c in signals.columns for c in columns):
        return np.zeros((0, 3))
    x, y, size = (signals[c] for c in columns)
    seen = np.isfinite(size) & (size > 0)
    rounded = np.round(np.stack([x[seen], y[seen], size[seen]], axis=1))
    if not len(rounded):
        return np.zeros((0, 3))
    spots, frames = np.unique(rounded, axis=0, return_counts=True)
    held = frames @ _near(spots, spots[:, 0], spots[:, 1], spots[:, 2], rule, rule.spot_scale) >= rule.framed_min_frames
    return np.asarray(spots[held], dtype=np.float64)


def fixture_frames(signals: Signals, rule: Fixtures) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(frames whose second face is a fixture, frames whose only face sits where a fixture was seen)."""
    n = len(signals)
    none = np.zeros(n, bool)
    needed = ("second_face_x_px", "second_face_y_px", "second_face_size_px", "gaze_face_x_px", "gaze_face_y_px")
    if n == 0 or not all(c in signals.columns for c in (*needed, "face_size_px")):
        return none, none.copy()
    ts = signals.timestamps_ms
    faces = signals["face_count"]
    sx, sy, ss = signals["second_face_x_px"], signals["second_face_y_px"], signals["second_face_size_px"]
    mx, my, largest = signals["gaze_face_x_px"], signals["gaze_face_y_px"], signals["face_size_px"]
    fixed = np.zeros(n, bool)
    two = (faces == 2) & np.isfinite(sx)
    # Each frame's window, [t - window / 2, t + window / 2], by bisection: the timestamps are in order.
    first = np.searchsorted(ts, ts - rule.window_ms // 2, side="left")
    end = np.searchsorted(ts, ts + rule.window_ms // 2, side="right")
    for i in np.flatnonzero(two):
        window = slice(first[i], end[i])
        both = two[window]
        if both.sum() < rule.min_coverage * len(both) or both.sum() < 3:
            continue
        x, y, size = sx[window][both], sy[window][both], ss[window][both]
        low, high = size.min(), size.max()
        still = max(np.ptp(x), np.ptp(y)) <= max(rule.still * low, rule.jitter_px)
        steady = high <= max(rule.still_scale * low, low + rule.still_px)
        small = np.nanmedian(size) <= rule.max_size_ratio * np.nanmedian(largest[window][both])
        tracked = both & np.isfinite(mx[window])
        moving = tracked.sum() >= 2 and max(np.ptp(mx[window][tracked]), np.ptp(my[window][tracked])) >= rule.moving_px
        fixed[i] = still and steady and small and moving
    spots = np.concatenate([_spots(sx[fixed], sy[fixed], ss[fixed]), framed_spots(signals, rule)])
    others = np.flatnonzero(two & ~fixed)
    fixed[others] = _at_a_spot(spots, sx[others], sy[others], ss[others], rule, rule.spot_scale)
    alone = np.zeros(n, bool)
    if all(c in signals.columns for c in ("face_x_px", "face_y_px")):
        ones = np.flatnonzero(faces == 1)
        fx, fy = signals["face_x_px"][ones], signals["face_y_px"][ones]
        alone[ones] = _at_a_spot(spots, fx, fy, largest[ones], rule, rule.alone_scale)
    return fixed, alone

    def at_a_spot(x: float, y: float, size: float, scale: float = rule.spot_scale) -> bool:
        return bool(np.any(_near(spots, x, y, size, rule, scale)))

    for i in np.flatnonzero((faces == 2) & np.isfinite(sx) & ~fixed):
        fixed[i] = at_a_spot(sx[i], sy[i], ss[i])
    if all(c in signals.columns for c in ("face_x_px", "face_y_px")):
        fx, fy = signals["face_x_px"], signals["face_y_px"]
        for i in np.flatnonzero(faces == 1):
            alone[i] = at_a_spot(fx[i], fy[i], largest[i], rule.alone_scale)
    return fixed, alone


def crowded_frames(signals: Signals, fixtures: Fixtures) -> NDArray[np.bool_]:
    """Frames with two or more people in view: two faces or more, where the second is not a picture on the wall."""
    if "face_count" not in signals.columns:
        return np.zeros(len(signals), dtype=bool)
    fixed, _ = fixture_frames(signals, fixtures)
    return np.asarray((signals["face_count"] >= 2) & ~fixed, dtype=bool)
