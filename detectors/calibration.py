"""Session-level calibration of "looking at the screen", and a per-frame looking-away score.

Where "at the screen" lies depends on where the webcam sits (above, beside or below the screen),
so a fixed zero would flag a candidate with a side-mounted camera for the whole exam. The
reference is estimated from the session itself: the candidate faces the screen most of the time,
so the robust centre (median, then the median again of the frames near it) of head yaw, pitch and
eye gaze over all frames with a usable face is "at the screen". Deviations from it, divided by
per-signal tolerances, give the score.

These are pure functions over the concatenated ``Signals`` of a whole session (they need every
chunk), run after the detectors and before the segmenter. ``away_events`` is a simple temporal
rule (hysteresis plus a minimum duration) used by the accuracy benchmark; the real segmenter in
``pipelines/`` may replace it but should consume ``looking_away_score`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .seams import Signals

__all__ = ["AwayConfig", "Calibration", "away_events", "calibrate", "hold_last", "looking_away_score"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class AwayConfig:
    """Tolerances around the calibrated "at the screen" reference; a score of 1 is one tolerance.

    Defaults: a head turned 25 degrees sideways or 20 up/down is away. Eye gaze: on the labelled
    Proctoring-AI dev footage our ``eye_gaze_h`` stayed within 0.064 eye widths of the session
    centre while looking at the screen (p99 0.054) and moved at least 0.118 when averted, so
    0.09 sits between. (Our scale runs ~1.6x the data README's FaceMesh ratio, which puts the
    same split at 0.033 / 0.081: different iris model and eye-corner landmarks.)

    Vertical eye gaze is off by default (``gaze_v=None``): it moves with the lids and the
    expression, and on the dev set it raised most of the false alarms (forward-facing stills
    with another expression) while no label needs it.
    """

    yaw_deg: float = 25.0
    pitch_deg: float = 20.0
    gaze_h: float = 0.09
    gaze_v: float | None = None
    eye_deg_per_width: float = 100.0
    """Eye rotation per eye width of iris travel, to add eye gaze to head yaw (rough: ~10 degrees
    per 0.1 eye width; a 12 mm eyeball in a 30 mm eye gives asin(2.5 x), and our eye_gaze_h runs
    ~1.6x the geometric ratio)."""
    hold_gaze_ms: int = 400
    """Eye gaze is measured at a lower rate; hold each measurement this long."""
    min_frames: int = 20
    """Fewer usable frames than this and the session cannot be calibrated: every score is NaN."""

    def __post_init__(self) -> None:
        for name in ("yaw_deg", "pitch_deg", "gaze_h", "gaze_v", "eye_deg_per_width"):
            if name == "gaze_v" and self.gaze_v is None:
                continue
            if not getattr(self, name) > 0:
                raise ValueError(f"AwayConfig.{name}: expected > 0, found {getattr(self, name)}")
        if self.hold_gaze_ms < 0 or self.min_frames < 1:
            raise ValueError(
                f"AwayConfig: expected hold_gaze_ms >= 0 and min_frames >= 1, "
                f"found {self.hold_gaze_ms} and {self.min_frames}"
            )


@dataclass(frozen=True)
class Calibration:
    """The session's "at the screen" reference (NaN where a signal had no usable frames)."""

    yaw_deg: float
    pitch_deg: float
    gaze_h: float
    gaze_v: float
    frames: int


def robust_centre(values: FloatArray, tolerance: float) -> float:
    """Median, then the median of the values within one tolerance of it (a one-step mode seek).

    The second step keeps long away stretches from dragging the reference toward them.
    """
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan")
    centre = float(np.median(v))
    near = v[np.abs(v - centre) <= tolerance]
    return float(np.median(near)) if near.size else centre


def hold_last(timestamps_ms: NDArray[np.int64], values: FloatArray, hold_ms: int) -> FloatArray:
    """Fill NaNs with the last finite value if it is at most ``hold_ms`` old."""
    out = values.copy()
    last_t, last_v = None, np.nan
    for i, (t, v) in enumerate(zip(timestamps_ms, values, strict=True)):
        if np.isfinite(v):
            last_t, last_v = t, v
        elif last_t is not None and t - last_t <= hold_ms:
            out[i] = last_v
    return out


def calibrate(signals: Signals, config: AwayConfig) -> Calibration:
    """Estimate the session's "at the screen" head pose and eye gaze."""
    yaw = signals["head_yaw_deg"]
    usable = int(np.isfinite(yaw).sum())
    if usable < config.min_frames:
        nan = float("nan")
        return Calibration(nan, nan, nan, nan, usable)
    return Calibration(
        yaw_deg=robust_centre(yaw, config.yaw_deg),
        pitch_deg=robust_centre(signals["head_pitch_deg"], config.pitch_deg),
        gaze_h=robust_centre(signals["eye_gaze_h"], config.gaze_h),
        gaze_v=float("nan") if config.gaze_v is None else robust_centre(signals["eye_gaze_v"], config.gaze_v),
        frames=usable,
    )


def looking_away_score(signals: Signals, config: AwayConfig | None = None) -> FloatArray:
    """Per-frame looking-away score: the largest deviation from the calibration, in tolerances.

    ``>= 1`` means beyond a tolerance on at least one of yaw, pitch, horizontal (and, if enabled,
    vertical) eye gaze, or on the combined sideways gaze (yaw plus eye rotation). NaN means
    unknown (no face, or a session too short to calibrate), never away. Eye gaze missing on a
    frame (iris not run, or held value too old) leaves the head pose alone to
    decide; where the mesh was unusable but the face was detected (near profile, far up), the
    coarse keypoint angles (``head_yaw_coarse_deg``, ``head_pitch_coarse_deg``, optional
    columns) decide alone.
    """
    cfg = config or AwayConfig()
    cal = calibrate(signals, cfg)
    n = len(signals)
    if not np.isfinite(cal.yaw_deg):
        return np.full(n, np.nan)
    ts = signals.timestamps_ms
    parts = [
        np.abs(signals["head_yaw_deg"] - cal.yaw_deg) / cfg.yaw_deg,
        np.abs(signals["head_pitch_deg"] - cal.pitch_deg) / cfg.pitch_deg,
    ]
    eyes = [("eye_gaze_h", cal.gaze_h, cfg.gaze_h)]
    if cfg.gaze_v is not None:
        eyes.append(("eye_gaze_v", cal.gaze_v, cfg.gaze_v))
    for column, centre, tol in eyes:
        if np.isfinite(centre):
            held = hold_last(ts, signals[column], cfg.hold_gaze_ms)
            parts.append(np.abs(held - centre) / tol)
            if column == "eye_gaze_h":
                # Where the eyes point sideways is head yaw plus eye-in-head rotation: a head
                # turned just under its tolerance with the eyes further the same way is away.
                combined = (signals["head_yaw_deg"] - cal.yaw_deg) + cfg.eye_deg_per_width * (held - centre)
                parts.append(np.abs(combined) / cfg.yaw_deg)
    stacked = np.vstack(parts)
    head_known = np.isfinite(stacked[0]) & np.isfinite(stacked[1])
    score = np.full(n, np.nan)
    if np.any(head_known):
        score[head_known] = np.nanmax(stacked[:, head_known], axis=0)
    coarse_parts = [
        np.abs(signals[column] - centre) / tol
        for column, centre, tol in (
            ("head_yaw_coarse_deg", cal.yaw_deg, cfg.yaw_deg),
            ("head_pitch_coarse_deg", cal.pitch_deg, cfg.pitch_deg),
        )
        if column in signals.columns
    ]
    if coarse_parts:
        # Near profile or tilted far up only BlazeFace's keypoints are left.
        coarse = np.vstack(coarse_parts)
        use = ~head_known & np.isfinite(coarse).any(axis=0)
        if np.any(use):
            score[use] = np.nanmax(coarse[:, use], axis=0)
    return score


def away_events(
    timestamps_ms: NDArray[np.int64],
    score: FloatArray,
    *,
    enter: float = 1.0,
    leave: float = 0.7,
    min_duration_ms: int = 1000,
    max_unknown_ms: int = 500,
) -> list[tuple[int, int]]:
    """Looking-away events as (start_ms, end_ms): hysteresis plus a minimum duration.

    An event opens when the score reaches ``enter`` and stays open while it is at least
    ``leave``; unknown (NaN) frames keep it open for at most ``max_unknown_ms``. Events shorter
    than ``min_duration_ms`` are dropped: a glance at the keyboard is not an event. An event's
    duration counts its frames' display time (last minus first timestamp, plus one median frame
    interval), so five frames at 5 fps last one second. ``end_ms`` is the time of the last frame
    in the event.
    """
    if leave > enter:
        raise ValueError(f"away_events: expected leave <= enter, found leave={leave}, enter={enter}")
    step = int(np.median(np.diff(timestamps_ms))) if len(timestamps_ms) > 1 else 0
    min_span = min_duration_ms - step
    events: list[tuple[int, int]] = []
    start: int | None = None
    last_in: int | None = None
    for t, s in zip(timestamps_ms.tolist(), score.tolist(), strict=True):
        if start is None:
            if s >= enter:
                start = last_in = t
            continue
        assert last_in is not None
        if s >= leave:
            last_in = t
        elif s != s and t - last_in <= max_unknown_ms:  # NaN: unknown, tolerated briefly
            continue
        else:
            if last_in - start >= min_span:
                events.append((start, last_in))
            start = last_in = None
    if start is not None and last_in is not None and last_in - start >= min_span:
        events.append((start, last_in))
    return events
