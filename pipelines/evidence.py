"""From a session's signals to per-frame evidence for each flag kind, and why each flag fired.

Pure functions: signals and configs in, arrays and plain dicts out. Evidence is in [0, 1] per frame, NaN
where a frame cannot tell; the segmenter (`pipelines.segments`) turns it into flagged segments, and
`explain` attaches to each segment what a reviewer needs to judge it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.vocabulary import FlagKind
from detectors import AwayConfig, AwayTrace, Signals, away_trace
from pipelines.identity import Identity, IdentityRule
from pipelines.people import EmptySeat, Fixtures, face_share, not_people
from pipelines.segments import ExamPolicy, Segment

FloatArray = NDArray[np.float64]
TRACE_POINTS = 48
"""At most this many (time, score) points of a looking-away flag's trace are kept for the reviewer."""


@dataclass(frozen=True)
class TurnedAway:
    """A face lost while the head was turning away is a head turned too far to track, not an empty seat.

    No-face frames that begin within ``within_ms`` of a frame whose head pose scored as looking away
    (``from_score`` tolerances: actually away, not merely drifting) count as looking away, for at most
    ``max_ms``; after that they are no-face again (the candidate may have turned and left). A face that vanishes
    while the candidate looked at the screen (a cut, someone leaving) stays no face. A head turning away is a
    face that was being seen: the turning frame counts only where another frame showed a face at most
    ``within_ms`` before it. A lone detection in an empty scene (a cartoon or a pet read as a turned face for one
    frame) does not turn the empty seat around it into looking away.

    Only the head counts (``AwayTrace.head``): eyes to the side do not make the detectors lose a face, and a
    candidate who glanced aside as they got up has left. Mirrored (``benchmarks/capture.py``), dev09's candidate
    did that, the eye gaze 1.07 tolerances off and the head 0.25, and the empty seat that followed read as a
    head turned away.

    A head turned too far to track comes back where it was. Where the next face seen belongs to another placement
    group than the turning one (``detectors.calibration``: it came back elsewhere, at another size, or as another
    person), the face was lost to a cut, a camera moved or the candidate leaving, and those frames stay no face. On
    the tilted camera (``benchmarks/capture.py``) Big Buck Bunny, read as a head turned away on two frames, made 3.6 s
    of dev12's empty scene after it "looking away"; the candidate came back leaning back, another group.
    """

    within_ms: int = 600
    from_score: float = 1.0
    max_ms: int = 5_000


def _mask_runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(start, stop) frame indices of each run of True in ``mask``, stop exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def turned_away_losses(
    timestamps_ms: NDArray[np.int64],
    face_count: FloatArray,
    away_score: FloatArray,
    rule: TurnedAway,
    groups: NDArray[np.int64] | None = None,
) -> NDArray[np.bool_]:
    """Frames with no face that continue a head turn (see ``TurnedAway``). With ``groups`` (the calibration's
    placement group per frame), a loss after which the face comes back in another group than the turning frame's is
    not one."""
    lost = _turned_away_losses(timestamps_ms, face_count, away_score, rule)
    if groups is None:
        return lost
    seen = np.flatnonzero(face_count > 0)
    for start, stop in _mask_runs(lost):
        after = seen[seen >= stop]
        if start > 0 and len(after) and groups[after[0]] != groups[start - 1]:
            lost[start:stop] = False
    return lost


def _turned_away_losses(
    timestamps_ms: NDArray[np.int64], face_count: FloatArray, away_score: FloatArray, rule: TurnedAway
) -> NDArray[np.bool_]:
    """No-face frames within ``rule`` of a face seen turning away, wherever the face comes back."""
    lost = np.zeros(len(timestamps_ms), bool)
    turning_at: int | None = None  # time of the last frame scored as turning away
    run_start: int | None = None  # start of the no-face run that continues it
    seen_at: int | None = None  # time of the last frame with a face
    for i, (t, faces, score) in enumerate(zip(timestamps_ms.tolist(), face_count, away_score, strict=True)):
        if faces == 0:
            if run_start is None and turning_at is not None and t - turning_at <= rule.within_ms:
                run_start = t
            if run_start is not None and t - run_start < rule.max_ms:
                lost[i] = True
            continue
        run_start = None
        followed = seen_at is not None and t - seen_at <= rule.within_ms
        turning_at = t if followed and np.isfinite(score) and score >= rule.from_score else None
        seen_at = t
    return lost


@dataclass(frozen=True)
class UnreadableHead:
    """A lone candidate whose head pose cannot be read for a while has turned too far to read: looking away.

    The seat is not empty (one face is counted), but neither the face mesh nor BlazeFace's keypoints give a head
    pose: the head is tilted far up or down, or turned past where the landmarks hold. A head tilted far back in
    sunglasses is found by the full-range model alone, and the mesh scores it 0.02-0.09. The short-range model,
    run on every frame the track does not cover, finds a face turned to the screen once it is about a tenth of
    the frame's longer side; a smaller face is found again only by the full-range pass, once a second, so a
    track it lost stays unread for up to a second whatever the head does. Only a face of at least
    ``min_face_share`` of that side (half as large again) is taken as one that should have been read, and a run
    of such frames lasting at least ``min_ms`` counts as looking away. A shorter run (the mesh losing a frame or
    two) stays unknown, and so does a smaller face (a candidate leaning back from an HD webcam), a frame too dark
    to see it, or a picture left alone in view. A candidate whose head is read on less than ``min_read_share`` of
    the session's one-face frames is one the detectors cannot read (a face always cut by the edge of the view, a
    camera far below it, a covered face): their unread frames stay unknown rather than a session-long flag.

    What it cannot tell apart: a face the gaze path refused as not a person's (``FaceAnalysisDetector``) while
    face presence counted it. That was not seen alone on the development sessions; it reads as "head unreadable"
    in the flag's explanation. (A face counted only by the full-range pass is read: the gaze path starts a track
    on it where that pass runs.)
    """

    min_ms: int = 1000
    min_read_share: float = 0.5
    min_face_share: float = 0.15


def unreadable_heads(
    timestamps_ms: NDArray[np.int64],
    one_face: NDArray[np.bool_],
    head_read: NDArray[np.bool_],
    readable: NDArray[np.bool_],
    rule: UnreadableHead,
) -> NDArray[np.bool_]:
    """Frames in runs of at least ``rule.min_ms`` where the one face in view (``one_face``) could have been read
    (``readable``: large enough, light enough) and its head pose was not (``head_read``), in a session whose head
    is read on at least ``rule.min_read_share`` of its one-face frames (see ``UnreadableHead``)."""
    unread = one_face & ~head_read & readable
    out = np.zeros(len(timestamps_ms), bool)
    if not one_face.any() or np.mean(head_read[one_face]) < rule.min_read_share:
        return out
    for start, stop in _mask_runs(unread):
        if timestamps_ms[stop - 1] - timestamps_ms[start] >= rule.min_ms:
            out[start:stop] = True
    return out


def large_enough_to_read(signals: Signals, rule: UnreadableHead) -> NDArray[np.bool_]:
    """Frames whose largest face is at least ``rule.min_face_share`` of the frame's longer side (``face_share``);
    False where that is not known."""
    share = face_share(signals)
    return np.asarray(np.isfinite(share) & (share >= rule.min_face_share), dtype=bool)


def flag_evidence(
    signals: Signals,
    away: AwayConfig,
    turned: TurnedAway | None = None,
    fixtures: Fixtures | None = None,
    unreadable: UnreadableHead | None = None,
    seat: EmptySeat | None = None,
) -> tuple[dict[FlagKind, FloatArray], AwayTrace | None]:
    """Per-frame evidence in [0, 1] for each flag kind (NaN where a frame cannot tell), and the looking-away
    trace it came from (None for a session with no frames).

    A dark camera cannot show that a face is absent, so it is unknown for `no_face` and, where it shows fewer
    than two faces, for `multiple_faces`: bad light must not read as "no face", but two faces seen in a dark
    room are two faces. A covered lens (nearly uniform or black, and no face found) is
    `camera_blocked`, and no face can be seen through it: `no_face` too, once it lasts that flag's minimum.
    A face lost while the head turned away is looking away, not no face (``TurnedAway``), and so is a lone face
    whose head pose cannot be read for a while (``UnreadableHead``). A picture left alone (``Fixtures``) or a lone
    face too small to be anyone at the desk (``EmptySeat``) is an empty seat.
    """
    n = len(signals)
    if n == 0:
        return {kind: np.zeros(0) for kind in FlagKind}, None
    faces = signals["face_count"]
    # A lens that shows a face is not covered, whatever the frame-quality heuristic says of a very dark picture.
    covered = (signals["covered"] > 0) & (faces == 0)
    blind = covered | (signals["too_dark"] > 0)
    trace = away_trace(signals, away)
    no_face = np.where(faces == 0, 1.0, 0.0)
    multiple = np.where(faces >= 2, 1.0, 0.0)
    # A score of 1 is one tolerance off the calibrated "at the screen": evidence 0.5 = the policy's `enter`.
    looking_away = np.clip(trace.score / 2.0, 0.0, 1.0)
    turned_lost = turned_away_losses(
        signals.timestamps_ms, faces, trace.head, turned or TurnedAway(), trace.calibration.group
    ) & ~blind
    no_face[turned_lost] = np.nan
    looking_away[turned_lost] = 1.0
    fixed, seat_empty = not_people(signals, fixtures or Fixtures(), seat or EmptySeat())
    # Read as the trace reads it: a mesh pose (yaw and pitch), or either keypoint angle.
    head_read = np.isfinite(signals["head_yaw_deg"]) & np.isfinite(signals["head_pitch_deg"])
    for column in ("head_yaw_coarse_deg", "head_pitch_coarse_deg"):
        if column in signals.columns:
            head_read |= np.isfinite(signals[column])
    rule = unreadable or UnreadableHead()
    readable = large_enough_to_read(signals, rule) & ~blind
    looking_away[unreadable_heads(signals.timestamps_ms, (faces == 1) & ~seat_empty, head_read, readable, rule)] = 1.0
    multiple[fixed] = 0.0
    no_face[seat_empty] = 1.0  # the candidate left: only a picture, or a face far across the room, is there
    looking_away[seat_empty] = np.nan
    no_face[blind] = np.nan
    no_face[covered] = 1.0
    multiple[blind & (faces < 2)] = np.nan
    evidence = {
        FlagKind.NO_FACE: no_face,
        FlagKind.MULTIPLE_FACES: multiple,
        FlagKind.LOOKING_AWAY: looking_away,
        FlagKind.CAMERA_BLOCKED: covered.astype(np.float64),
    }
    return evidence, trace


def _rounded(value: float, digits: int = 2) -> float | None:
    return round(float(value), digits) if np.isfinite(value) else None


def explain_looking_away(
    segment: Segment,
    timestamps_ms: NDArray[np.int64],
    trace: AwayTrace,
    away: AwayConfig,
    no_face: FloatArray | None = None,
) -> dict[str, Any]:
    """What made a looking-away flag fire: the reference it was judged against, the tolerances, which signal
    went furthest, and the score over time (1.0 = one tolerance, the threshold). Frames without a score are
    counted apart: a face lost (``TurnedAway``), or, where ``no_face`` evidence shows a face, a head that could not
    be read (``UnreadableHead``); the driver is "head unreadable" where those are most of the flag."""
    inside = (timestamps_ms >= segment.start_ms) & (timestamps_ms < segment.end_ms)
    cal = trace.calibration
    frames = np.flatnonzero(inside)
    if frames.size == 0:
        return {}
    parts = {
        "head yaw": trace.yaw,
        "head pitch": trace.pitch,
        "eye gaze": trace.gaze_h,
        "head and eyes": trace.sideways,
    }
    parts["head (keypoints)"] = trace.coarse
    means = {
        name: float(np.nanmean(v[frames])) if np.any(np.isfinite(v[frames])) else -1.0 for name, v in parts.items()
    }
    driver = max(means, key=lambda k: means[k])
    ref = frames[0]
    group = int(cal.group[ref])
    reference = next((r for r in cal.references if r.group == group), None)
    step = max(1, frames.size // TRACE_POINTS + (frames.size % TRACE_POINTS > 0))
    points = frames[::step]
    scale = float(cal.tolerance_scale[ref])
    unscored = inside & ~np.isfinite(trace.score)
    face_seen = no_face == 0 if no_face is not None else np.zeros(len(timestamps_ms), bool)
    unread = int(np.sum(unscored & face_seen))
    lost = int(np.sum(unscored & ~face_seen))
    if 2 * unread >= frames.size:
        driver = "head unreadable"
    return {
        "driver": driver,
        "reference": {
            "yaw_deg": _rounded(cal.yaw_deg[ref], 1),
            "pitch_deg": _rounded(cal.pitch_deg[ref], 1),
            "gaze_h": _rounded(cal.gaze_h[ref], 3),
            "calibrated": bool(reference.calibrated) if reference else False,
            "since_s": reference.start_ms / 1000 if reference else None,
        },
        "tolerances": {
            "yaw_deg": round(away.yaw_deg * scale, 1),
            "pitch_deg": round(away.pitch_deg * scale, 1),
            "gaze_h": round(away.gaze_h * scale, 3),
        },
        "peak_score": _rounded(np.nanmax(trace.score[frames]) if np.any(np.isfinite(trace.score[frames])) else np.nan),
        "face_lost_frames": lost,
        "head_unreadable_frames": unread,
        "trace": [[int(timestamps_ms[i]), _rounded(trace.score[i])] for i in points],
    }


def explain_identity(
    segment: Segment, timestamps_ms: NDArray[np.int64], who: Identity, rule: IdentityRule
) -> dict[str, Any]:
    """What a person_changed or identity_mismatch flag rests on: the samples inside it and their distances."""
    inside = (timestamps_ms >= segment.start_ms) & (timestamps_ms < segment.end_ms)
    distances = who.distance_to_enrolment if segment.kind is FlagKind.IDENTITY_MISMATCH else who.distance_to_reference
    sampled = distances[inside & np.isfinite(distances)]
    return {
        "against": "the enrolment photo" if segment.kind is FlagKind.IDENTITY_MISMATCH else "the session's first face",
        "reference_s": None if who.reference_ms is None else who.reference_ms / 1000,
        "samples": int(sampled.size),
        "median_distance": _rounded(float(np.median(sampled)), 3) if sampled.size else None,
        "threshold": rule.match_distance,
    }


PRESENCE_KINDS = (FlagKind.NO_FACE, FlagKind.MULTIPLE_FACES, FlagKind.CAMERA_BLOCKED)


def explain_presence(
    segment: Segment, timestamps_ms: NDArray[np.int64], evidence: FloatArray, policy: ExamPolicy
) -> dict[str, Any]:
    """What a no_face, multiple_faces or camera_blocked flag rests on: its per-frame evidence (1 = the frame
    shows it, NaN = the frame cannot tell, e.g. too dark), the level a frame must reach, and the minimum length."""
    inside = np.flatnonzero((timestamps_ms >= segment.start_ms) & (timestamps_ms < segment.end_ms))
    if inside.size == 0:
        return {}
    kind = policy.for_kind(segment.kind)
    values = evidence[inside]
    step = max(1, inside.size // TRACE_POINTS + (inside.size % TRACE_POINTS > 0))
    return {
        "frames": int(inside.size),
        "frames_showing": int(np.sum(values >= kind.enter)),
        "frames_unknown": int(np.sum(~np.isfinite(values))),
        "enter": kind.enter,
        "min_duration_s": kind.min_duration_ms / 1000,
        "trace": [[int(timestamps_ms[i]), _rounded(evidence[i])] for i in inside[::step]],
    }


def explained(
    segments: list[Segment],
    timestamps_ms: NDArray[np.int64],
    trace: AwayTrace | None,
    away: AwayConfig,
    who: Identity,
    rule: IdentityRule,
    evidence: dict[FlagKind, FloatArray] | None = None,
    policy: ExamPolicy | None = None,
) -> list[Segment]:
    """The segments with their explanations attached."""
    out = []
    for seg in segments:
        if seg.kind is FlagKind.LOOKING_AWAY and trace is not None:
            no_face = evidence.get(FlagKind.NO_FACE) if evidence is not None else None
            seg = replace(seg, details=explain_looking_away(seg, timestamps_ms, trace, away, no_face))
        elif seg.kind in (FlagKind.PERSON_CHANGED, FlagKind.IDENTITY_MISMATCH):
            seg = replace(seg, details=explain_identity(seg, timestamps_ms, who, rule))
        elif seg.kind in PRESENCE_KINDS and evidence is not None and policy is not None and seg.kind in evidence:
            seg = replace(seg, details=explain_presence(seg, timestamps_ms, evidence[seg.kind], policy))
        out.append(seg)
    return out
