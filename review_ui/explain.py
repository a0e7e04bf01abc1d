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
    text = (
        f"{details.get('driver', 'the head pose')} went furthest, peaking at "
        f"{'an unknown' if peak is None else f'{peak:.1f}'} tolerances from {against}. "
        f"Tolerances: yaw {tol['yaw_deg']}°, pitch {tol['pitch_deg']}°, eye gaze {tol['gaze_h']} eye widths."
    )
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
