"""A flag's "why", as a reviewer reads it: one sentence and a small chart of the score against the threshold.

The pipeline stores what made a flag fire (`segments.details`); this turns it into text and the points of
an inline SVG line. A reviewer who sees the reference and the tolerance can tell a real turn from a
calibration that went wrong, and dismiss the latter with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CHART_WIDTH, CHART_HEIGHT, CHART_TOP_SCORE = 100.0, 24.0, 3.0
"""The chart's viewBox, and the score at its top edge (scores above are drawn at the top)."""


@dataclass(frozen=True)
class Why:
    text: str
    points: str
    """SVG polyline points of the score over the flag's time, in the chart's viewBox."""
    threshold_y: float
    """Where a score of 1.0 (one tolerance: the threshold) lies in the chart."""


def _signed(value: float | None, unit: str, digits: int = 0) -> str:
    return "unknown" if value is None else f"{value:+.{digits}f}{unit}"


def _y(score: float) -> float:
    return round(CHART_HEIGHT * (1 - min(max(score, 0.0), CHART_TOP_SCORE) / CHART_TOP_SCORE), 2)


def looking_away_why(details: Mapping[str, Any] | None) -> Why | None:
    """The explanation of a looking-away flag, or None for a flag stored without one (older runs, added flags)."""
    if not details or "reference" not in details:
        return None
    ref, tol = details["reference"], details["tolerances"]
    if ref.get("calibrated"):
        since = ref.get("since_s") or 0.0
        against = (
            f'this placement\'s own "at the screen" (calibrated from {int(since) // 60}:{int(since) % 60:02d}: '
            f"yaw {_signed(ref.get('yaw_deg'), '°')}, pitch {_signed(ref.get('pitch_deg'), '°')})"
        )
    else:
        against = "looking into the camera (this placement was too brief to calibrate, so the tolerances are wider)"
    peak = details.get("peak_score")
    tolerances = f"Tolerances: yaw {tol['yaw_deg']}°, pitch {tol['pitch_deg']}°, eye gaze {tol['gaze_h']} eye widths."
    unread = details.get("head_unreadable_frames", 0)
    if details.get("driver") == "head unreadable":
        text = (
            f"The face stayed in view, but its head pose could not be read on {unread} frames: a head turned or "
            f"tilted further than the landmark models read counts as looking away. Where it could be read, it "
            f"was judged against {against}. {tolerances}"
        )
    else:
        text = (
            f"{details.get('driver', 'the head pose')} went furthest, peaking at "
            f"{'an unknown' if peak is None else f'{peak:.1f}'} tolerances from {against}. {tolerances}"
        )
        if unread:
            text += f" The head pose could not be read on {unread} frames."
    if details.get("face_lost_frames"):
        text += f" The face was lost on {details['face_lost_frames']} frames while turned away."
    trace = [(t, s) for t, s in details.get("trace", []) if s is not None]
    if len(trace) >= 2:
        t0, t1 = trace[0][0], trace[-1][0]
        span = max(t1 - t0, 1)
        points = " ".join(f"{round(CHART_WIDTH * (t - t0) / span, 2)},{_y(s)}" for t, s in trace)
    else:
        points = ""
    return Why(text=text, points=points, threshold_y=_y(1.0))


PRESENCE_WHAT = {
    "no_face": "no face",
    "multiple_faces": "more than one face",
    "camera_blocked": "a covered or dark camera",
}


def presence_why(kind: str, details: Mapping[str, Any] | None) -> Why | None:
    """The explanation of a no_face, multiple_faces or camera_blocked flag: how many sampled frames showed it,
    the level a frame must reach, and the minimum length; its chart is the per-frame evidence (0 to 1)."""
    if not details or "frames" not in details or kind not in PRESENCE_WHAT:
        return None
    unknown = details.get("frames_unknown", 0)
    text = (
        f"{details['frames_showing']} of {details['frames']} sampled frames showed {PRESENCE_WHAT[kind]}"
        f"{f' ({unknown} could not tell: too dark or covered)' if unknown else ''}. A frame counts at evidence "
        f"{details['enter']:.2f} or more, and a flag needs {details['min_duration_s']:.1f} s of such frames."
    )
    trace = [(t, s) for t, s in details.get("trace", []) if s is not None]

    def y(score: float) -> float:
        return round(CHART_HEIGHT * (1 - min(max(score, 0.0), 1.0)), 2)

    points = ""
    if len(trace) >= 2:
        t0, span = trace[0][0], max(trace[-1][0] - trace[0][0], 1)
        points = " ".join(f"{round(CHART_WIDTH * (t - t0) / span, 2)},{y(s)}" for t, s in trace)
    return Why(text=text, points=points, threshold_y=y(float(details["enter"])))


def flag_why(kind: str, details: Mapping[str, Any] | None) -> Why | None:
    """Any flag's explanation, where the pipeline stored one."""
    if kind == "looking_away":
        return looking_away_why(details)
    return presence_why(kind, details)
