"""Calibration of "looking at the screen" that follows the session, and a per-frame looking-away score.

Where "at the screen" lies depends on where the webcam sits (above, beside or below the screen), so a
fixed zero would flag a candidate with a side-mounted camera for the whole exam. The reference is
estimated from the session itself: the candidate faces the screen most of the time, so the robust centre
(median, then the median again of the frames near it) of head yaw, pitch and eye gaze is "at the screen".

One centre for the whole session assumes one person and one camera placement from start to end. Real
sessions break that (the laptop is moved, the candidate sits back, someone else sits down), and a
reference taken from the dominant pose then flags everyone else who looks straight at the camera. So the
reference follows the session (``detectors.placement`` has the rule for where it may change):
- the session is cut into stretches at discontinuities of the face track and where the face descriptors
  (where the detectors embedded the face) change person, and stretches at the same place and of the same
  person form a group;
  each group is calibrated on its own frames;
- within a group the centre is a rolling robust centre over ``drift_window_ms`` on each side, so a
  slow drift in posture is followed while a minute of reading notes (a minority of the window) is not;
- the group with the most face time always calibrates itself; any other group with less than
  ``min_calibration_ms`` of usable face cannot tell its own "at the screen": it
  is judged against the frontal prior (looking into the camera, where screen and webcam nearly always
  sit together) with tolerances widened by ``prior_tolerance_scale``, because less is known about it.
  A head turned well away is away from any reference; a stranger looking into the camera is not.

These are pure functions over the concatenated ``Signals`` of a whole session (they need every chunk),
run after the detectors and before the segmenter. ``away_events`` is a simple temporal rule (hysteresis
plus a minimum duration) used by the accuracy benchmark; the segmenter in ``pipelines/`` consumes
``looking_away_score`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .placement import Placement, PlacementRule, person_splits, placement_groups, same_person_groups, stretches
from .seams import Signals

__all__ = [
    "AwayConfig",
    "AwayTrace",
    "Calibration",
    "Reference",
    "away_events",
    "away_trace",
    "calibrate",
    "hold_last",
    "looking_away_score",
    "steady_gaze",
]

FloatArray = NDArray[np.float64]
PLACEMENT_COLUMNS = ("gaze_face_x_px", "gaze_face_y_px", "gaze_face_size_px")
DESCRIPTOR_PREFIX = "face_descriptor_"


@dataclass(frozen=True)
class AwayConfig:
    """Tolerances around the calibrated "at the screen" reference (a score of 1 is one tolerance), and how
    the reference follows the session.

    Defaults: a head turned 25 degrees sideways or 20 up/down is away. Eye gaze: on the labelled
    Proctoring-AI dev footage our ``eye_gaze_h`` stayed within 0.064 eye widths of the session
    centre while looking at the screen (p99 0.054) and moved at least 0.118 when averted, so
    0.09 sits between. (Our scale runs ~1.6x the data README's FaceMesh ratio, which puts the
    same split at 0.033 / 0.081: different iris model and eye-corner landmarks.)

    Vertical eye gaze is off by default (``gaze_v=None``): it moves with the lids and the
    expression, and on the dev set it raised most of the false alarms (forward-facing stills
    with another expression) while no label needs it.

    The frontal prior (``frontal_*``) is what our detectors read for people looking into the camera:
    on the ten development CMU people's frontal stills, yaw 1 +- 2 degrees and pitch -13 to +2 degrees
    (median -2), on the demo's two photos pitch -8 and -12; so pitch -5 with the widened tolerance
    (25 degrees) covers them all.
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
    steady_gaze_ms: int = 1000
    """An eye-gaze measurement counts only where the measurements just before or after it, at most this far away,
    agree (``steady_gaze``: the median of three, the smaller of two, nothing from one alone). In a dim room's sensor
    noise a single iris read jumps by 0.1 eye widths, a whole tolerance, while the head pose holds still; a real
    look holds over several measurements (2.5 a second). 0 takes each measurement as it is."""
    min_frames: int = 20
    """Fewer usable frames than this in the whole session and nothing can be judged: every score is NaN."""
    placement: PlacementRule = field(default_factory=PlacementRule)
    """Where the reference may change (``detectors.placement``)."""
    same_person_distance: float = 0.55
    """Stretches of one placement whose face descriptors are farther apart than this are different people,
    calibrated apart (``detectors.placement.same_person_groups``); two successive descriptors of one stretch this far
    apart split it where the face moved most between them (``detectors.placement.person_splits``)."""
    min_calibration_ms: int = 12_000
    """A placement group with less usable face time than this is judged against the frontal prior."""
    drift_window_ms: int = 120_000
    """The rolling centre looks this far either side of a frame, within its placement group."""
    drift_step_ms: int = 5_000
    """The rolling centre is computed every this many ms and interpolated between."""
    frontal_yaw_deg: float = 0.0
    frontal_pitch_deg: float = -5.0
    frontal_gaze_h: float = 0.0
    prior_tolerance_scale: float = 1.25

    def __post_init__(self) -> None:
        for name in ("yaw_deg", "pitch_deg", "gaze_h", "gaze_v", "eye_deg_per_width", "prior_tolerance_scale"):
            if name == "gaze_v" and self.gaze_v is None:
                continue
            if not getattr(self, name) > 0:
                raise ValueError(f"AwayConfig.{name}: expected > 0, found {getattr(self, name)}")
        if self.hold_gaze_ms < 0 or self.steady_gaze_ms < 0 or self.min_frames < 1:
            raise ValueError(
                f"AwayConfig: expected hold_gaze_ms >= 0, steady_gaze_ms >= 0 and min_frames >= 1, "
                f"found {self.hold_gaze_ms}, {self.steady_gaze_ms} and {self.min_frames}"
            )
        if self.min_calibration_ms < 0 or self.drift_window_ms < 1 or self.drift_step_ms < 1:
            raise ValueError(
                "AwayConfig: expected min_calibration_ms >= 0, drift_window_ms >= 1 and drift_step_ms >= 1, found "
                f"{self.min_calibration_ms}, {self.drift_window_ms}, {self.drift_step_ms}"
            )


@dataclass(frozen=True)
class Reference:
    """One placement group's "at the screen" (the median over its frames of the rolling centre)."""

    group: int
    start_ms: int
    """When the group first appears."""
    yaw_deg: float
    pitch_deg: float
    gaze_h: float
    calibrated: bool
    """False: too little of this placement to calibrate; judged against the frontal prior."""
    usable_ms: int


@dataclass(frozen=True)
class Calibration:
    """Per frame: the "at the screen" reference and how far to trust it (NaN reference: cannot judge)."""

    yaw_deg: FloatArray
    pitch_deg: FloatArray
    gaze_h: FloatArray
    gaze_v: FloatArray
    tolerance_scale: FloatArray
    group: NDArray[np.int64]
    references: tuple[Reference, ...]
    frames: int
    """Usable frames (head pose known) in the session."""


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


def steady_gaze(timestamps_ms: NDArray[np.int64], deviation: FloatArray, within_ms: int) -> FloatArray:
    """Each finite eye-gaze deviation (from the calibrated centre) confirmed by its neighbours, the finite values just
    before and after it that are at most ``within_ms`` away: the median of the three where both are there, the
    smaller of the two in size where only one is, NaN where neither is (one read alone is not evidence). So a look
    counts where at least two reads in a row agree, and keeps its start and end; a lone spike is gone. NaNs stay
    NaN; ``within_ms`` <= 0 takes every read as it is."""
    out = deviation.copy()
    at = np.flatnonzero(np.isfinite(deviation))
    if within_ms <= 0 or not len(at):
        return out
    t, v = timestamps_ms[at], deviation[at]
    close = t[1:] - t[:-1] <= within_ms
    before, after = np.full(len(at), np.nan), np.full(len(at), np.nan)
    before[1:] = np.where(close, v[:-1], np.nan)
    after[:-1] = np.where(close, v[1:], np.nan)
    both = np.isfinite(before) & np.isfinite(after)
    one = np.where(np.isfinite(before), before, after)
    smaller = np.where(np.abs(one) < np.abs(v), one, v)
    steady = np.where(np.isfinite(one), smaller, np.nan)
    steady[both] = np.median(np.vstack([before[both], v[both], after[both]]), axis=0)
    out[at] = steady
    return out


def placement_of(signals: Signals) -> Placement | None:
    """The tracked face's placement, or None for signals recorded before the detectors emitted it."""
    if not all(c in signals.columns for c in PLACEMENT_COLUMNS):
        return None
    x, y, size = (signals[c] for c in PLACEMENT_COLUMNS)
    return Placement(signals.timestamps_ms, x, y, size)


def _rolling_centre(ts: NDArray[np.int64], values: FloatArray, tolerance: float, cfg: AwayConfig) -> FloatArray:
    """A robust centre that follows slow drift: computed every ``drift_step_ms`` over +- ``drift_window_ms``
    of this group's frames, then interpolated at each frame (NaN where the window has no finite value)."""
    finite = np.isfinite(values)
    if not np.any(finite):
        return np.full(len(ts), np.nan)
    anchors = np.arange(int(ts[0]), int(ts[-1]) + cfg.drift_step_ms, cfg.drift_step_ms)
    centres = np.array(
        [robust_centre(values[np.abs(ts - a) <= cfg.drift_window_ms], tolerance) for a in anchors.tolist()]
    )
    known = np.isfinite(centres)
    return np.interp(ts, anchors[known], centres[known]) if np.any(known) else np.full(len(ts), np.nan)


def _descriptors(signals: Signals) -> FloatArray | None:
    """The face descriptor columns as an (n, 128) array (NaN where not embedded), or None without them."""
    names = sorted(c for c in signals.columns if c.startswith(DESCRIPTOR_PREFIX))
    return np.stack([signals[c] for c in names], axis=1) if names else None


def calibrate(signals: Signals, config: AwayConfig) -> Calibration:
    """Estimate "at the screen" (head pose and eye gaze) per frame, following the session's placements."""
    n = len(signals)
    ts = signals.timestamps_ms
    yaw, pitch, gaze_h = signals["head_yaw_deg"], signals["head_pitch_deg"], signals["eye_gaze_h"]
    gaze_v = signals["eye_gaze_v"]
    usable = np.isfinite(yaw)
    out = {name: np.full(n, np.nan) for name in ("yaw", "pitch", "gaze_h", "gaze_v")}
    scale = np.ones(n)
    placement = placement_of(signals)
    if placement is None:
        group = np.zeros(n, np.int64)
    else:
        stretch_ids = stretches(placement, config.placement)
        faces = _descriptors(signals)
        if faces is not None:
            stretch_ids = person_splits(placement, stretch_ids, faces, config.same_person_distance)
        group = placement_groups(placement, stretch_ids, config.placement)
        if faces is not None:
            group = same_person_groups(group, stretch_ids, faces, config.same_person_distance)
    if int(usable.sum()) < config.min_frames:
        return Calibration(out["yaw"], out["pitch"], out["gaze_h"], out["gaze_v"], scale, group, (), int(usable.sum()))
    step = int(np.median(np.diff(ts))) if n > 1 else 0
    groups = np.unique(group)
    dominant = int(groups[np.argmax([np.sum(usable & (group == g)) for g in groups])])
    references = []
    for g in groups.tolist():
        frames = group == g
        usable_ms = int(np.sum(usable & frames)) * step
        # The placement with the most face time is the candidate at their desk: it always calibrates itself
        # (as one session-wide centre did); any other needs enough time of its own.
        calibrated = g == dominant or usable_ms >= config.min_calibration_ms
        if calibrated:
            t = ts[frames]
            out["yaw"][frames] = _rolling_centre(t, yaw[frames], config.yaw_deg, config)
            out["pitch"][frames] = _rolling_centre(t, pitch[frames], config.pitch_deg, config)
            out["gaze_h"][frames] = _rolling_centre(t, gaze_h[frames], config.gaze_h, config)
            if config.gaze_v is not None:
                out["gaze_v"][frames] = _rolling_centre(t, gaze_v[frames], config.gaze_v, config)
        else:
            out["yaw"][frames] = config.frontal_yaw_deg
            out["pitch"][frames] = config.frontal_pitch_deg
            out["gaze_h"][frames] = config.frontal_gaze_h
            scale[frames] = config.prior_tolerance_scale
        references.append(
            Reference(
                group=g,
                start_ms=int(ts[frames][0]),
                yaw_deg=float(np.nanmedian(out["yaw"][frames])) if np.any(np.isfinite(out["yaw"][frames])) else np.nan,
                pitch_deg=float(np.nanmedian(out["pitch"][frames]))
                if np.any(np.isfinite(out["pitch"][frames]))
                else np.nan,
                gaze_h=float(np.nanmedian(out["gaze_h"][frames]))
                if np.any(np.isfinite(out["gaze_h"][frames]))
                else np.nan,
                calibrated=calibrated,
                usable_ms=usable_ms,
            )
        )
    return Calibration(
        out["yaw"], out["pitch"], out["gaze_h"], out["gaze_v"], scale, group, tuple(references), int(usable.sum())
    )


@dataclass(frozen=True)
class AwayTrace:
    """Why each frame scored as it did: deviations from the reference, each in its own tolerances (NaN where
    unknown), the score (their maximum), and the reference itself. A reviewer's evidence for a flag."""

    yaw: FloatArray
    pitch: FloatArray
    gaze_h: FloatArray
    sideways: FloatArray
    """Head yaw plus eye rotation together."""
    coarse: FloatArray
    """BlazeFace keypoint angles, where the mesh was unusable (near profile, far up)."""
    score: FloatArray
    calibration: Calibration

    @property
    def head(self) -> FloatArray:
        """The score of the head pose alone: yaw and pitch, or the keypoint angles where the mesh had none (NaN
        where neither). The eyes are left out: eyes to the side never make the detectors lose a face."""
        known = np.isfinite(self.yaw) & np.isfinite(self.pitch)
        return np.asarray(np.where(known, np.maximum(self.yaw, self.pitch), self.coarse), dtype=np.float64)


def away_trace(signals: Signals, config: AwayConfig | None = None) -> AwayTrace:
    """The looking-away score per frame with every part that went into it (see ``looking_away_score``)."""
    cfg = config or AwayConfig()
    cal = calibrate(signals, cfg)
    n = len(signals)
    ts = signals.timestamps_ms
    nan = np.full(n, np.nan)
    tol_yaw, tol_pitch = cfg.yaw_deg * cal.tolerance_scale, cfg.pitch_deg * cal.tolerance_scale
    yaw_dev = signals["head_yaw_deg"] - cal.yaw_deg
    yaw = np.abs(yaw_dev) / tol_yaw
    pitch = np.abs(signals["head_pitch_deg"] - cal.pitch_deg) / tol_pitch
    gaze_dev = hold_last(ts, steady_gaze(ts, signals["eye_gaze_h"] - cal.gaze_h, cfg.steady_gaze_ms), cfg.hold_gaze_ms)
    gaze_h = np.abs(gaze_dev) / (cfg.gaze_h * cal.tolerance_scale)
    # Where the eyes point sideways is head yaw plus eye-in-head rotation: a head turned just under its
    # tolerance with the eyes further the same way is away.
    sideways = np.abs(yaw_dev + cfg.eye_deg_per_width * gaze_dev) / tol_yaw
    parts = [yaw, pitch, gaze_h, sideways]
    if cfg.gaze_v is not None:
        gaze_v_dev = steady_gaze(ts, signals["eye_gaze_v"] - cal.gaze_v, cfg.steady_gaze_ms)
        parts.append(np.abs(hold_last(ts, gaze_v_dev, cfg.hold_gaze_ms)) / (cfg.gaze_v * cal.tolerance_scale))
    stacked = np.vstack(parts)
    head_known = np.isfinite(yaw) & np.isfinite(pitch)
    score = nan.copy()
    if np.any(head_known):
        score[head_known] = np.nanmax(stacked[:, head_known], axis=0)
    coarse_parts = [
        np.abs(signals[column] - centre) / tol
        for column, centre, tol in (
            ("head_yaw_coarse_deg", cal.yaw_deg, tol_yaw),
            ("head_pitch_coarse_deg", cal.pitch_deg, tol_pitch),
        )
        if column in signals.columns
    ]
    coarse = nan.copy()
    if coarse_parts:
        # Near profile or tilted far up only BlazeFace's keypoints are left.
        stacked_coarse = np.vstack(coarse_parts)
        has = np.isfinite(stacked_coarse).any(axis=0)
        coarse[has] = np.nanmax(stacked_coarse[:, has], axis=0)
        use = ~head_known & has
        score[use] = coarse[use]
    return AwayTrace(yaw, pitch, gaze_h, sideways, coarse, score, cal)


def looking_away_score(signals: Signals, config: AwayConfig | None = None) -> FloatArray:
    """Per-frame looking-away score: the largest deviation from the calibration, in tolerances.

    ``>= 1`` means beyond a tolerance on at least one of yaw, pitch, horizontal (and, if enabled,
    vertical) eye gaze, or on the combined sideways gaze (yaw plus eye rotation). NaN means
    unknown (no face, or a session too short to calibrate), never away. Eye gaze missing on a
    frame (iris not run, or held value too old) leaves the head pose alone to decide; where the mesh
    was unusable but the face was detected (near profile, far up), the coarse keypoint angles
    (``head_yaw_coarse_deg``, ``head_pitch_coarse_deg``, optional columns) decide alone.
    """
    return away_trace(signals, config).score


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
