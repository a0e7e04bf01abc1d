"""Flags under other capture conditions: the development sessions as a weaker webcam or a browser recorder
would deliver them.

Run from the repository root with no arguments: ``python benchmarks/capture.py``. It reads the same 38 sessions
as ``benchmarks/accuracy.py`` (``../shared/data`` and the built sessions, staged and rendered under
``.devset-cache`` when missing). The development footage is 640x480 and clean; the flags were tuned on it. Real
recordings are often smaller, compressed harder and framed differently, so every sampled frame of every session
(the pipeline's 5 fps) is changed in one way at a time, run through the pipeline's detectors in the pipeline's
batches, and segmented with the default exam policy and ``AwayConfig``:

- **as recorded**: the accuracy benchmark's own answers (its cache);
- **320x240**: each frame shrunk to half its width and height (``INTER_AREA``), as a low-resolution webcam or
  a recorder capped for bandwidth delivers it; faces have half the pixels across;
- **low bitrate**: the sampled frames encoded with H.264 (libx264, 5 fps, a keyframe every 10 s) at
  ``LOW_BITRATE`` bits a second and decoded back: 20 kbit a frame, what 300 kbit/s at 15 fps leaves a frame
  (a browser's ``MediaRecorder`` on a poor uplink); the bitrate x264 reached is printed;
- **tilted 15 deg**: each frame turned 15 degrees about its centre and shrunk to 0.76 so that all of it stays in
  view, the corners filled by replicating its edges (a laptop lid at an angle, or a head resting on a hand:
  head roll is not looking away). Turned at full size, a poster near the edge of the view left it (dev13);
- **farther back**: each frame shrunk to ``FARTHER`` about its centre, the border filled by replicating its
  edges: the camera farther away or wider-angled, every face 0.6 times as wide (a pet on the chair included: a
  face the detectors refuse at one size must be refused at another);
- **far back**: the same at ``FAR``, faces 50-70 px across in 640x480 (about 3 m from a webcam, or a candidate
  leaning back from a 1280x720 one): under the short-range face model's reach, so every head pose starts from the
  full-range model;
- **mirrored**: each frame flipped left to right, as a recorder that keeps the mirrored preview delivers it. No
  label changes, so every difference is an asymmetry of the detectors (a model that finds faces turned one way
  better than the other, a sign convention that only holds one way round);
- **boxed in the other shape**: each frame centred on black in the other common shape, a 4:3 picture pillarboxed
  to 16:9 and a 16:9 one letterboxed to 4:3, as a recorder or a platform's transcoder delivers a camera of another
  shape. Faces keep their pixels; the frame grows around them, and its bars are not a dark room.

Per condition it prints the face count accuracy (as ``accuracy.frame_rows``), the flags scored per kind
(``benchmarks/scoring.py``: events caught, false alarms, false alarms per hour), the negatives counted as a person
(``accuracy.negative_mistakes``) and the events missed and false alarms raised that the recording as made did
not have. Then the identity flags per condition: ``benchmarks/identity.py``'s swaps between people in colour
(person_changed and identity_mismatch found) and its false alarms on single-candidate sessions, with enrolments
taken from the recordings as made, as a platform's enrolment photo would be. The answers are cached under
``.devset-cache/capture`` by video md5, detector versions and condition.

Last line: ``RESULT capture conditions=<n> face_count_acc_min=.. no_face_recall_min=.. multiple_recall_min=..
away_recall_min=.. fa_per_h_max=.. negatives_fa_max=..``: the worst of the changed conditions (false alarms of
every kind per hour of recording).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and shadow the packages of the same name;
# put this checkout first instead, so a worktree measures its own code and not an installed copy.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hashlib
import io
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import partial
from typing import Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks import identity
from benchmarks.accuracy import CACHE, KINDS, built_sessions, frame_rows, negative_mistakes, shared_sessions
from benchmarks.scoring import KindScore, total
from benchmarks.session_signals import (
    CHUNK,
    Detectors,
    Measured,
    load_signals,
    md5_of,
    measured,
    sampled_frames,
    save_signals,
)
from benchmarks.tuning import Session, evaluate
from core.vocabulary import FlagKind
from detectors import AwayConfig, FrameBatch, Signals
from detectors.identity import FaceEmbedder
from pipelines.decode import DecodeOptions
from pipelines.identity import IdentityRule

CAPTURE_CACHE = CACHE / "capture"
CAPTURE_VERSION = "2"
RECORDED = "as recorded"
LOW_BITRATE = 100_000
"""Bits a second at the 5 fps sampled: 20 kbit a frame, as 300 kbit/s at 15 fps."""
KEYFRAME_EVERY = 50
"""Frames between keyframes: one every 10 s at 5 fps, as a recorder's encoder might."""
TILT_DEG = 15.0
FARTHER = 0.6
FAR = 0.35
Frames = list[NDArray[np.uint8]]


def half_size(frames: Frames) -> Frames:
    half = [cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA) for f in frames]
    return [np.asarray(f, dtype=np.uint8) for f in half]


def centred(picture: NDArray[np.uint8], height: int, width: int, border: int) -> NDArray[np.uint8]:
    """``picture`` in the middle of a ``height`` x ``width`` frame, the rest filled as ``border`` (an OpenCV
    border type: replicated edges, or black)."""
    top, left = (height - picture.shape[0]) // 2, (width - picture.shape[1]) // 2
    bottom, right = height - picture.shape[0] - top, width - picture.shape[1] - left
    return np.asarray(cv2.copyMakeBorder(picture, top, bottom, left, right, border, value=(0, 0, 0)), np.uint8)


def shrunk(frames: Frames, scale: float) -> Frames:
    """Each frame shrunk to ``scale`` about its centre, the border filled by replicating its edges."""
    out = []
    for f in frames:
        h, w = f.shape[:2]
        small = cv2.resize(f, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        out.append(centred(np.asarray(small, np.uint8), h, w, cv2.BORDER_REPLICATE))
    return out


def boxed(frames: Frames) -> Frames:
    """Each frame centred on black in the other common shape: narrower than 16:9, pillarboxed to 16:9; else
    letterboxed to 4:3."""
    out = []
    for f in frames:
        h, w = f.shape[:2]
        if w * 9 < h * 16:
            out.append(centred(f, h, 2 * round(h * 16 / 9 / 2), cv2.BORDER_CONSTANT))
        else:
            out.append(centred(f, 2 * round(w * 3 / 4 / 2), w, cv2.BORDER_CONSTANT))
    return out


def mirrored(frames: Frames) -> Frames:
    return [np.ascontiguousarray(f[:, ::-1]) for f in frames]


def tilted(frames: Frames) -> Frames:
    """Each frame turned ``TILT_DEG`` about its centre and shrunk just enough that all of it stays in view: what
    was in the picture still is (a picture on the wall is not pushed out of view), only turned."""
    out = []
    for f in frames:
        h, w = f.shape[:2]
        c, s = abs(math.cos(math.radians(TILT_DEG))), abs(math.sin(math.radians(TILT_DEG)))
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), TILT_DEG, min(w / (w * c + h * s), h / (w * s + h * c)))
        out.append(np.asarray(cv2.warpAffine(f, turn, (w, h), borderMode=cv2.BORDER_REPLICATE), dtype=np.uint8))
    return out


@dataclass
class Encoded:
    frames: Frames
    bits_per_s: float


def low_bitrate(frames: Frames, fps: int) -> Encoded:
    """The frames through libx264 at ``LOW_BITRATE`` and back, in memory."""
    buffer = io.BytesIO()
    h, w = frames[0].shape[:2]
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.bit_rate = LOW_BITRATE
        stream.codec_context.gop_size = KEYFRAME_EVERY
        stream.codec_context.time_base = Fraction(1, fps)
        for k, f in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: stream.height, : stream.width]), "rgb24")
            picture.pts = k
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    size_bits = 8 * buffer.getbuffer().nbytes
    buffer.seek(0)
    with av.open(buffer, "r") as decoded:
        back = [np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8) for frame in decoded.decode(video=0)]
    if len(back) != len(frames):
        raise RuntimeError(f"low_bitrate: {len(frames)} frames in, {len(back)} out of the H.264 round trip")
    return Encoded(back, size_bits * fps / len(frames))


def unencoded(change: Callable[[Frames], Frames]) -> Callable[[Frames, int], Encoded]:
    return lambda frames, _: Encoded(change(frames), float("nan"))


TILTED = f"tilted {TILT_DEG:g} deg"
FARTHER_BACK = f"farther back ({FARTHER:g})"
FAR_BACK = f"far back ({FAR:g})"
CONDITIONS: dict[str, Callable[[Frames, int], Encoded]] = {
    "320x240": unencoded(half_size),
    "low bitrate": low_bitrate,
    TILTED: unencoded(tilted),
    FARTHER_BACK: unencoded(partial(shrunk, scale=FARTHER)),
    FAR_BACK: unencoded(partial(shrunk, scale=FAR)),
    "mirrored": unencoded(mirrored),
    "boxed in the other shape": unencoded(boxed),
}


@dataclass
class Outcome:
    signals: Signals
    bits_per_s: float


def changed(det: Detectors, video: Path, *, condition: str) -> Outcome:
    """The detectors' answers on the session under ``condition``, from the cache when measured before."""
    key = f"{md5_of(video)} {det.versions} {condition} v{CAPTURE_VERSION}"
    stored = CAPTURE_CACHE / f"{video.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if stored.is_file():
        signals, (bits_per_s,) = load_signals(stored, "bits_per_s")
        return Outcome(signals, float(bits_per_s))
    fps = round(DecodeOptions().sample_fps)
    sampled = list(sampled_frames(video, fps))
    result = CONDITIONS[condition]([f for _, f in sampled], fps)
    stamps = np.array([t for t, _ in sampled], np.int64)
    parts = [
        det.signals(FrameBatch(np.stack(result.frames[at : at + CHUNK]), stamps[at : at + CHUNK]))
        for at in range(0, len(stamps), CHUNK)
    ]
    outcome = Outcome(Signals.concat(parts), result.bits_per_s)
    save_signals(stored, outcome.signals, bits_per_s=np.array(outcome.bits_per_s))
    return outcome


@dataclass
class Report:
    frames: list[tuple[int, int, int]]
    scores: dict[str, dict[FlagKind, KindScore]]
    negatives: list[str]
    bits_per_s: list[float]

    @property
    def face_count_acc(self) -> float:
        rows = np.array(self.frames)
        return float(np.mean(rows[:, 0] == rows[:, 1]))


def report(entries: list[tuple[Path, dict[str, Any], str, str]], signals: Callable[[Path], Outcome]) -> Report:
    out = Report([], {}, [], [])
    for video, truth, source, family in entries:
        outcome = signals(video)
        # No baseline detector here: its column is zeros, and only ours is read.
        m = Measured(outcome.signals, np.zeros(len(outcome.signals.timestamps_ms), np.int64), {})
        out.frames += frame_rows(truth, m)
        out.negatives += negative_mistakes(truth, m)
        duration_ms = round(float(truth["duration_s"]) * 1000)
        out.scores[video.name] = evaluate(
            Session(video.name, source, family, truth, m.signals, duration_ms), AwayConfig()
        )
        if np.isfinite(outcome.bits_per_s):
            out.bits_per_s.append(outcome.bits_per_s)
    return out


def identity_table(det: Detectors, conditions: list[str]) -> list[str]:
    """``benchmarks/identity.py``'s checks of the pipeline's identity flags (its swaps, spliced and built, and its
    false alarms on single-candidate sessions, with its enrolments from the recordings as made) on each condition's
    signals: the lines of a table with one row a condition, then a line per false alarm."""
    runs = identity.load_runs(det)
    timed = [face for run in runs for face, _ in identity.session_faces(run)]
    pool = identity.dedupe(timed + identity.photo_faces(det.analysis.gaze, FaceEmbedder())[0])
    shown: dict[str, set[str]] = defaultdict(set)
    for face in timed:
        shown[face.origin].add(face.photo)
    rows, alarms, hours = [], [], 0.0
    for condition in conditions:
        changed_runs = [
            r if condition == RECORDED else replace(r, signals=changed(det, r.video, condition=condition).signals)
            for r in runs
        ]
        checks = identity.pipeline_checks(changed_runs, pool, shown, IdentityRule())
        colour = [x for kind, v in checks.found.items() if "greyscale" not in kind for x in v]
        pc, mm = checks.alarms["colour"]
        hours = checks.hours["colour"]
        rows.append(
            f"| {condition} | {sum(x[0] for x in colour)}/{len(colour)} | {sum(x[1] for x in colour)}/{len(colour)} "
            f"| {pc} / {mm} |"
        )
        alarms += [f"- {condition}: {note}" for note in checks.notes if note.startswith("false alarm")]
    header = [
        "Swaps between people in colour, built and spliced; person_changed found when it starts within 3 s of the",
        f"switch. False alarms on the single-candidate sessions in colour ({hours:.2f} h).",
        "",
        "| condition | person_changed found | identity_mismatch found | false alarms: person_changed / mismatch |",
        "|---|---|---|---|",
    ]
    return [*header, *rows, "", *alarms]


@dataclass
class DevSessions:
    """The accuracy benchmark's 38 sessions, and the detectors' answers on them as recorded or under a condition."""

    det: Detectors
    entries: list[tuple[Path, dict[str, Any], str, str]]
    lit: set[Path]  # measured (and cached) with the accuracy benchmark's lighting table

    def signals(self, video: Path, truth: dict[str, Any], condition: str | None) -> Signals:
        if condition is None:
            return measured(self.det, video, truth, CACHE, lighting=video in self.lit).signals
        return changed(self.det, video, condition=condition).signals


def dev_sessions() -> DevSessions:
    """The sessions, staged and rendered on first use, with the pipeline's detectors loaded."""
    shared = shared_sessions()
    return DevSessions(Detectors(), shared + built_sessions(), {video for video, *_ in shared})


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)
    start = time.perf_counter()
    sessions = dev_sessions()
    entries = sessions.entries
    truths = {video: truth for video, truth, *_ in entries}

    def recorded_signals(video: Path) -> Outcome:
        return Outcome(sessions.signals(video, truths[video], None), float("nan"))

    reports = {RECORDED: report(entries, recorded_signals)}
    for condition in CONDITIONS:
        reports[condition] = report(entries, partial(changed, sessions.det, condition=condition))
        logging.getLogger("capture").warning("%s measured after %.0f s", condition, time.perf_counter() - start)

    print(f"## Flags per capture condition ({len(entries)} sessions, default policy)\n")
    print("| condition | face count acc | kind | events | caught | recall | false alarms | FA per hour |")
    print("|---|---|---|---|---|---|---|---|")
    for condition, r in reports.items():
        summed = total(r.scores.values())
        for kind in KINDS:
            k = summed[kind]
            print(
                f"| {condition} | {r.face_count_acc:.4f} | {kind.value} | {k.events} | {k.caught} | {k.recall:.3f} "
                f"| {k.false_alarms} | {k.fa_per_h:.1f} |"
            )
    print()
    recorded = reports[RECORDED]
    for condition, r in reports.items():
        rate = f", H.264 at a median {np.median(r.bits_per_s) / 1000:.0f} kbit/s" if r.bits_per_s else ""
        print(f"### {condition}: {len(r.negatives)} negatives counted as a person{rate}\n")
        for line in r.negatives:
            print(f"- negative: {line}")
        if condition == RECORDED:
            print()
            continue
        for name, scores in r.scores.items():
            for kind in KINDS:
                lost = sorted(set(scores[kind].missed) - set(recorded.scores[name][kind].missed))
                raised = sorted(set(scores[kind].false) - set(recorded.scores[name][kind].false))
                for miss in lost:
                    print(f"- {name} {kind.value} missed: {miss}")
                for false in raised:
                    print(f"- {kind.value} false alarm: {false}")
        print()
    print("## Identity flags per capture condition (benchmarks/identity.py's checks, shipped match distance)\n")
    print("\n".join(identity_table(sessions.det, list(reports))), "\n")
    print(f"(ran in {time.perf_counter() - start:.0f} s)")
    worse = [r for c, r in reports.items() if c != RECORDED]
    sums = [total(r.scores.values()) for r in worse]
    hours = sum(float(truth["duration_s"]) for truth in truths.values()) / 3600
    print(
        f"RESULT capture conditions={len(worse)} face_count_acc_min={min(r.face_count_acc for r in worse):.4f} "
        f"no_face_recall_min={min(s[FlagKind.NO_FACE].recall for s in sums):.3f} "
        f"multiple_recall_min={min(s[FlagKind.MULTIPLE_FACES].recall for s in sums):.3f} "
        f"away_recall_min={min(s[FlagKind.LOOKING_AWAY].recall for s in sums):.3f} "
        f"fa_per_h_max={max(sum(s[kind].false_alarms for kind in KINDS) for s in sums) / hours:.2f} "
        f"negatives_fa_max={max(len(r.negatives) for r in worse)}"
    )


if __name__ == "__main__":
    main()
