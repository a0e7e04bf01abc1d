"""Flags across a change mid-session: the camera moved, or another person took the seat, with head turns after it.

Run from the repository root with no arguments: ``python benchmarks/shifts.py``. The held-out sets' false
looking_away alarms fell on sessions where the person or the camera's placement changed within the recording,
and the calibration follows the session for that (``detectors.calibration``). The built sessions of
``benchmarks/devset.py`` have such changes, but no head turns: they can show a false alarm, never a turn missed
after the change. Here the sessions that do have turns are spliced at a cut near their middle:

- **camera moved back**: the session as recorded up to the cut, then the same frames with the camera farther
  back (``benchmarks/capture.py``'s "farther back": every face 0.6 times as wide, nearer the centre);
- **camera moved closer**: the other way round, farther back up to the cut, then as recorded;
- **camera tilted**: as recorded, then every frame turned 15 degrees (a lid tilted, a camera knocked);
- **person change**: the first half of one session, then the second half of a session of another candidate
  (``../shared/data``, whose sessions have head turns: one candidate's calibration must not be another's).

Every session of the accuracy benchmark (``../shared/data`` and the built sessions) is spliced with each camera
change; the person changes pair each ``../shared/data`` session at 640x480 with one of another candidate. The
labels are carried through the splice, and an ``ignore`` band is added around the splice. The signals are the
detectors' answers from the accuracy and capture benchmarks' caches (computed when missing), joined at the cut:
as the pipeline would see a hard cut, apart from the face tracker's state. Scored per kind with the default exam
policy and ``AwayConfig`` (``benchmarks/scoring.py``); every event missed and every false alarm is listed.

Last line: ``RESULT shifts sessions=<n> away_recall=.. away_fa_per_h=.. no_face_recall=.. multiple_recall=..
fa_per_h=..`` over every spliced session: a kind's false alarms per hour of the time labelled without it (as the
accuracy benchmark counts them), and ``fa_per_h`` those of every kind per hour of recording (as the capture
benchmark does).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and shadow the packages of the same name;
# put this checkout first instead, so a worktree measures its own code and not an installed copy.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from benchmarks.accuracy import KINDS
from benchmarks.capture import FARTHER_BACK, TILTED, dev_sessions
from benchmarks.scoring import KindScore, total
from benchmarks.tuning import Session, evaluate
from core.vocabulary import FlagKind
from detectors import AwayConfig, Signals

SPLICE_BAND_S = 0.5
"""Half the ignore band around the splice, as around every cut of the development sessions."""


@dataclass(frozen=True)
class Part:
    """One session's labels and the detectors' answers on its frames, under one capture condition."""

    name: str
    truth: dict[str, Any]
    signals: Signals


def middle_cut_s(truth: dict[str, Any]) -> float:
    """The session's cut nearest its middle, within its middle 40%: a splice there cuts no labelled interval."""
    duration = float(truth["duration_s"])
    cuts = [c for c in truth.get("cuts_s", []) if 0.3 * duration <= c <= 0.7 * duration]
    if not cuts:
        raise ValueError(
            f"{truth['video']}: no cut in the middle 40% of its {duration:.1f} s to splice at; give it one, or leave "
            "it out of benchmarks/shifts.py"
        )
    return float(min(cuts, key=lambda c: abs(c - duration / 2)))


def _clipped(intervals: list[dict[str, Any]], start_s: float, end_s: float, shift_s: float) -> list[dict[str, Any]]:
    out = []
    for i in intervals:
        a, b = max(i["start_s"], start_s), min(i["end_s"], end_s)
        if b > a:
            out.append({**i, "start_s": round(a + shift_s, 3), "end_s": round(b + shift_s, 3)})
    return out


def _bands(bands: list[list[float]], start_s: float, end_s: float, shift_s: float) -> list[list[float]]:
    return [[max(a, start_s) + shift_s, min(b, end_s) + shift_s] for a, b in bands if min(b, end_s) > max(a, start_s)]


def spliced(first: Part, second: Part, name: str) -> Session:
    """``first`` up to its middle cut, then ``second`` from its middle cut on, labels and answers alike."""
    cut_a, cut_b = middle_cut_s(first.truth), middle_cut_s(second.truth)
    end_b = float(second.truth["duration_s"])
    shift_s = cut_a - cut_b
    shift_ms = round(cut_a * 1000) - round(cut_b * 1000)
    truth: dict[str, Any] = {
        "video": name,
        "duration_s": round(cut_a + end_b - cut_b, 3),
        "intervals": _clipped(first.truth["intervals"], 0.0, cut_a, 0.0)
        + _clipped(second.truth["intervals"], cut_b, end_b, shift_s),
        "ignore": [
            *_bands(first.truth.get("ignore", []), 0.0, cut_a, 0.0),
            [cut_a - SPLICE_BAND_S, cut_a + SPLICE_BAND_S],
            *_bands(second.truth.get("ignore", []), cut_b, end_b, shift_s),
        ],
    }
    a_ts, b_ts = first.signals.timestamps_ms, second.signals.timestamps_ms
    keep_a, keep_b = a_ts < round(cut_a * 1000), b_ts >= round(cut_b * 1000)
    if set(first.signals.columns) != set(second.signals.columns):
        raise ValueError(f"{name}: the two parts carry different columns; measure both with the same detectors")
    signals = Signals(
        np.concatenate([a_ts[keep_a], b_ts[keep_b] + shift_ms]),
        {c: np.concatenate([first.signals[c][keep_a], second.signals[c][keep_b]]) for c in first.signals.columns},
    )
    duration_ms = round(float(truth["duration_s"]) * 1000)
    return Session(name, "", "", truth, signals, duration_ms)


def hours(sessions: list[Session]) -> float:
    return sum(s.duration_ms for s in sessions) / 3_600_000


def person_pairs(parts: list[tuple[Part, str]]) -> list[tuple[Part, Part]]:
    """Each part with one of another candidate, taken in turn so that every candidate follows several others."""
    pairs = []
    for index, (part, candidate) in enumerate(parts):
        others = [p for p, c in parts if c != candidate]
        pairs.append((part, others[index % len(others)]))
    return pairs


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)
    start = time.perf_counter()
    sessions = dev_sessions()

    def part(video: Path, truth: dict[str, Any], condition: str | None) -> Part:
        return Part(video.name, truth, sessions.signals(video, truth, condition))

    changes: dict[str, list[Session]] = {}
    camera: dict[str, tuple[str | None, str | None]] = {
        "camera moved back": (None, FARTHER_BACK),
        "camera moved closer": (FARTHER_BACK, None),
        "camera tilted": (None, TILTED),
    }
    for change, (before, after) in camera.items():
        changes[change] = [
            spliced(part(video, truth, before), part(video, truth, after), video.name)
            for video, truth, *_ in sessions.entries
        ]
    shared = [entry for entry in sessions.entries if entry[0] in sessions.lit]
    same_size = [
        (part(video, truth, None), candidate) for video, truth, candidate, _ in shared if truth["width"] == 640
    ]
    changes["person change"] = [spliced(a, b, f"{a.name} -> {b.name}") for a, b in person_pairs(same_size)]
    logging.getLogger("shifts").warning("spliced after %.0f s", time.perf_counter() - start)

    scored: dict[str, dict[str, dict[FlagKind, KindScore]]] = {
        change: {s.name: evaluate(s, AwayConfig()) for s in sessions} for change, sessions in changes.items()
    }
    print("## Flags across a change mid-session (default policy)\n")
    print("| change | sessions | kind | events | caught | recall | false alarms | FA per hour without it |")
    print("|---|---|---|---|---|---|---|---|")
    for change, per_session in scored.items():
        summed = total(per_session.values())
        for kind in KINDS:
            k = summed[kind]
            print(
                f"| {change} | {len(per_session)} | {kind.value} | {k.events} | {k.caught} | {k.recall:.3f} "
                f"| {k.false_alarms} | {k.fa_per_h:.1f} |"
            )
    print()
    for change, per_session in scored.items():
        print(f"### {change}\n")
        for scores in per_session.values():
            for kind in KINDS:
                for miss in scores[kind].missed:
                    print(f"- {kind.value} missed: {miss}")
                for false in scores[kind].false:
                    print(f"- {kind.value} false alarm: {false}")
        print()
    every = [s for sessions in changes.values() for s in sessions]
    summed = total(scores for per_session in scored.values() for scores in per_session.values())
    print(f"(ran in {time.perf_counter() - start:.0f} s)")
    print(
        f"RESULT shifts sessions={len(every)} away_recall={summed[FlagKind.LOOKING_AWAY].recall:.3f} "
        f"away_fa_per_h={summed[FlagKind.LOOKING_AWAY].fa_per_h:.2f} "
        f"no_face_recall={summed[FlagKind.NO_FACE].recall:.3f} "
        f"multiple_recall={summed[FlagKind.MULTIPLE_FACES].recall:.3f} "
        f"fa_per_h={sum(summed[kind].false_alarms for kind in KINDS) / hours(every):.2f}"
    )


if __name__ == "__main__":
    main()
