"""Detector accuracy on the development set in ``../shared/data`` (relative to the repository root).

Run from the repository root with no arguments: ``python -m benchmarks.accuracy`` (about 5-8
minutes on 2 cores). Every setting is the library default; nothing is tuned per file. Prints:

1. frame-level face count (capped at 2) on frames sampled at 5 fps outside the ignore bands,
   ours and MediaPipe's legacy ``FaceDetection`` (model 0, threshold 0.5) as the baseline. Ours
   is the pipeline's ``face_analysis`` detector fed the pipeline's decode batches (16 frames), so
   the full-range pass runs at its default rate and carries its faces between, as in production;
2. looking-away events per session: the gaze columns of the same detector on the same 5 fps
   frames, ``looking_away_score`` calibrated per session, ignore
   bands set to unknown, then ``detectors.calibration.away_events`` (hysteresis 1.0/0.7, at
   least 1 s). A labelled away run counts as found if an event overlaps it (0.5 s slack); an
   event is a false alarm if it overlaps no away-or-unknown label and lies in ``false`` time for
   at least 1 s. False alarms per hour are per hour of ``looking_away = false`` time;
3. CMU head pose: each still classified forward/left/right/up from yaw and pitch against that
   person's own robust centre (the stand-in for a session's calibration);
4. PASCAL VOC group photos: recall of the 43 hand-labelled face boxes;
5. a lighting table: face recall on 1-fps frames labelled with faces, darkened (gamma 0.4, 0.25),
   washed out and with sensor noise.

Last line: ``RESULT accuracy face_count_acc=.. away_recall=.. away_fa_per_h=.. dark_recall=..
baseline_face_count_acc=..``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and shadow the packages of the same name;
# put this checkout first instead, so a worktree measures its own code and not an installed copy.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import csv
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import mediapipe as mp
import numpy as np

from detectors import (
    AwayConfig,
    FaceAnalysisDetector,
    FacePresenceDetector,
    FrameBatch,
    GazeDetector,
    Signals,
    away_events,
    looking_away_score,
)
from detectors.calibration import robust_centre
from pipelines.decode import DecodeOptions

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SAMPLE_EVERY = 3  # 15 fps -> 5 fps, as CHECK.md
CHUNK = DecodeOptions().batch_size  # the pipeline's detector batches
LIGHT_EVERY = 5  # of the sampled frames -> 1 fps for the lighting table
SLACK_MS = 500
MIN_EVENT_MS = 1000


@dataclass
class Sampled:
    """One sampled frame's labels and the answers of each detector."""

    t_ms: int
    faces: int
    away: bool | None
    ignored: bool
    ours: int = -1
    baseline: int = -1
    light: dict[str, tuple[int, int]] = field(default_factory=dict)  # variant -> (ours, baseline) >= 1 face


def gamma(img: np.ndarray, g: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 / g), 0, 255).astype(np.uint8)
    return lut[img]


def lighting_variants() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(0)
    return {
        "original": lambda x: x,
        "gamma 0.4": lambda x: gamma(x, 0.4),
        "gamma 0.25": lambda x: gamma(x, 0.25),
        "washed out": lambda x: (x.astype(np.float32) * 0.35 + 160).clip(0, 255).astype(np.uint8),
        "sensor noise": lambda x: (x + rng.normal(0, 20, x.shape)).clip(0, 255).astype(np.uint8),
    }


class Baseline:
    """MediaPipe's legacy face detector, model 0, threshold 0.5: the baseline to beat."""

    def __init__(self) -> None:
        self.fd = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)

    def count(self, frame: np.ndarray) -> int:
        result = self.fd.process(frame)
        return len(result.detections or [])


def decode(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame, with the pipeline's decoder settings that change pixels (not its sampling)."""
    with av.open(str(path)) as container:
        if DecodeOptions().skip_loop_filter:
            container.streams.video[0].codec_context.options = {"skip_loop_filter": "all"}
        for k, frame in enumerate(container.decode(video=0)):
            if k % SAMPLE_EVERY == 0:
                yield k, frame.to_ndarray(format="rgb24")


def label_at(truth: dict[str, Any], t: float) -> tuple[int, bool | None, bool]:
    interval = next(i for i in truth["intervals"] if i["start_s"] <= t < i["end_s"])
    ignored = any(a <= t <= b for a, b in truth["ignore"])
    return int(interval["faces"]), interval["looking_away"], ignored


def runs(truth: dict[str, Any], value: object) -> list[tuple[int, int]]:
    """Merged [start, end) ms stretches whose looking_away label equals ``value``."""
    out: list[tuple[int, int]] = []
    for i in truth["intervals"]:
        if i["looking_away"] is not value:
            continue
        s, e = round(i["start_s"] * 1000), round(i["end_s"] * 1000)
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def score_events(truth: dict[str, Any], events: list[tuple[int, int]], step_ms: int) -> tuple[int, int, int]:
    """(labelled away runs, found, false alarms)."""
    true_runs = runs(truth, True)
    unknown_runs = runs(truth, None)
    false_runs = runs(truth, False)
    spans = [(s, e + step_ms) for s, e in events]
    found = sum(any(overlap((a - SLACK_MS, b + SLACK_MS), ev) > 0 for ev in spans) for a, b in true_runs)
    fa = 0
    for ev in spans:
        if any(overlap(ev, r) > 0 for r in true_runs + unknown_runs):
            continue
        if sum(overlap(ev, r) for r in false_runs) >= MIN_EVENT_MS:
            fa += 1
    return len(true_runs), found, fa


class Chunked:
    """Feeds a detector CHUNK frames at a time, as the pipeline does, and joins the answers."""

    def __init__(self, detector: FaceAnalysisDetector) -> None:
        self.detector = detector
        self.frames: list[np.ndarray] = []
        self.stamps: list[int] = []
        self.parts: list[Signals] = []

    def add(self, frame: np.ndarray, t_ms: int) -> None:
        self.frames.append(frame)
        self.stamps.append(t_ms)
        if len(self.frames) == CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.frames:
            batch = FrameBatch(np.stack(self.frames), np.array(self.stamps, np.int64))
            self.parts.append(self.detector(batch))
            self.frames, self.stamps = [], []

    def finish(self) -> Signals:
        self.flush()
        return Signals.concat(self.parts)


def run_sessions(analysis: FaceAnalysisDetector, baseline: Baseline) -> dict[str, Any]:
    presence = analysis.presence
    variants = lighting_variants()
    report: dict[str, Any] = {"sessions": []}
    for video in sorted(DATA.glob("sessions/session*.*")):
        if video.suffix == ".json":
            continue
        truth = json.loads(video.with_suffix(".json").read_text())
        fps = truth["fps"]
        step_ms = round(1000 * SAMPLE_EVERY / fps)
        samples: list[Sampled] = []
        chunker = Chunked(analysis)
        for k, img in decode(video):
            t_ms = round(k * 1000 / fps)
            faces, away, ignored = label_at(truth, k / fps)
            s = Sampled(t_ms, faces, away, ignored)
            chunker.add(img, t_ms)
            if not ignored:
                s.baseline = baseline.count(img)
                if faces >= 1 and len(samples) % LIGHT_EVERY == 0:
                    for name, fn in variants.items():
                        changed = np.ascontiguousarray(fn(img))
                        found = len(presence.faces(changed)) >= 1
                        s.light[name] = (int(found), int(baseline.count(changed) >= 1))
            samples.append(s)
        signals = chunker.finish()
        for sampled, count in zip(samples, signals["face_count"], strict=True):
            sampled.ours = int(count)
        score = looking_away_score(signals, AwayConfig())
        ignored_mask = np.array([s.ignored for s in samples])
        score[ignored_mask] = np.nan
        events = away_events(signals.timestamps_ms, score, min_duration_ms=MIN_EVENT_MS)
        n_true, found, fa = score_events(truth, events, step_ms)
        false_s = sum(i["end_s"] - i["start_s"] for i in truth["intervals"] if i["looking_away"] is False)
        scored = [s for s in samples if not s.ignored]
        report["sessions"].append(
            {
                "video": video.name,
                "frames": len(scored),
                "ours": sum(min(s.ours, 2) == s.faces for s in scored),
                "baseline": sum(min(s.baseline, 2) == s.faces for s in scored),
                "errors": [(s.faces, min(s.ours, 2)) for s in scored if min(s.ours, 2) != s.faces],
                "away_runs": n_true,
                "away_found": found,
                "false_alarms": fa,
                "false_s": false_s,
                "events": len(events),
                "light": [s.light for s in scored if s.light],
            }
        )
        logging.getLogger("accuracy").info("%s done", video.name)
    return report


def cmu_head_pose(gaze: GazeDetector) -> tuple[dict[str, dict[str, int]], int, int, int]:
    """Confusion of labelled pose vs predicted pose over the CMU stills; also away accuracy."""
    rows = list(csv.DictReader((DATA / "frames/cmu/labels.csv").open()))
    per_person: dict[str, list[tuple[dict[str, str], float, float, float]]] = defaultdict(list)
    for row in rows:
        grey = cv2.imread(str(DATA / "frames/cmu" / row["file"]), cv2.IMREAD_GRAYSCALE)
        rgb = np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
        s = gaze(FrameBatch(rgb[None], np.zeros(1, np.int64)))
        yaw, pitch, coarse = (float(s[c][0]) for c in ("head_yaw_deg", "head_pitch_deg", "head_yaw_coarse_deg"))
        per_person[row["person"]].append((row, yaw, pitch, coarse))
    cfg = AwayConfig()
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    away_ok = away_n = 0
    for items in per_person.values():
        yaw0 = robust_centre(np.array([it[1] for it in items]), cfg.yaw_deg)
        pitch0 = robust_centre(np.array([it[2] for it in items]), cfg.pitch_deg)
        for row, yaw, pitch, coarse in items:
            if not np.isfinite(yaw) and np.isfinite(coarse) and abs(coarse - yaw0) >= cfg.yaw_deg:
                predicted = "left" if coarse < yaw0 else "right"
            elif not np.isfinite(yaw):
                predicted = "no face" if not np.isfinite(coarse) else "unknown"
            elif abs(yaw - yaw0) >= cfg.yaw_deg:
                predicted = "left" if yaw < yaw0 else "right"
            elif pitch - pitch0 >= cfg.pitch_deg:
                predicted = "up"
            elif pitch0 - pitch >= cfg.pitch_deg:
                predicted = "down"
            else:
                predicted = "forward"
            confusion[row["pose"]][predicted] += 1
            if predicted not in ("no face", "unknown"):
                away_n += 1
                away_ok += (predicted != "forward") == (row["looking_away"] == "true")
    correct = sum(confusion[p][p] for p in confusion)
    return confusion, correct, len(rows), away_ok * 1000 // max(away_n, 1)


def voc_recall(presence: FacePresenceDetector, baseline: Baseline) -> tuple[int, int, int]:
    images = json.loads((DATA / "frames/voc/faces.json").read_text())["images"]
    total = ours = base = 0
    mp_det = baseline.fd
    for entry in images:
        img = cv2.cvtColor(cv2.imread(str(DATA / "frames/voc" / entry["file"])), cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        found = presence.faces(img).boxes
        result = mp_det.process(img)
        theirs = []
        for d in result.detections or []:
            bb = d.location_data.relative_bounding_box
            theirs.append((bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h))
        for face in entry["faces"]:
            x, y, bw, bh = face["box_ltwh"]
            cx, cy = x + bw / 2, y + bh / 2
            total += 1
            ours += any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in found)
            base += any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in theirs)
    return total, ours, base


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)
    if not DATA.is_dir():
        raise SystemExit(f"expected the development set at {DATA}; it is not there")
    start = time.perf_counter()
    analysis = FaceAnalysisDetector()
    presence, gaze = analysis.presence, analysis.gaze
    baseline = Baseline()
    report = run_sessions(analysis, baseline)

    print("## Face count per frame (5 fps, ignore bands skipped; count capped at 2)\n")
    print("| session | frames | ours | MediaPipe m0 @0.5 | away runs | found | false alarms | events |")
    print("|---|---|---|---|---|---|---|---|")
    tot = ok = base_ok = runs_n = found_n = fa_n = 0
    false_s = 0.0
    for s in report["sessions"]:
        print(
            f"| {s['video']} | {s['frames']} | {s['ours'] / s['frames']:.3f} "
            f"| {s['baseline'] / s['frames']:.3f} "
            f"| {s['away_runs']} | {s['away_found']} | {s['false_alarms']} | {s['events']} |"
        )
        tot += s["frames"]
        ok += s["ours"]
        base_ok += s["baseline"]
        runs_n += s["away_runs"]
        found_n += s["away_found"]
        fa_n += s["false_alarms"]
        false_s += s["false_s"]
    acc, base_acc = ok / tot, base_ok / tot
    recall = found_n / max(runs_n, 1)
    fa_h = fa_n / (false_s / 3600)
    print(
        f"| **all** | {tot} | **{acc:.4f}** | {base_acc:.4f} | {runs_n} | {found_n} | {fa_n} "
        f"({fa_h:.2f}/h over {false_s / 60:.1f} min) | |\n"
    )
    errors: dict[str, int] = defaultdict(int)
    for s in report["sessions"]:
        for label, got in s["errors"]:
            errors[f"label {label} -> {got}"] += 1
    print("Our count errors (label -> detected):", dict(sorted(errors.items())), "\n")

    print("## Lighting (face recall on 1 fps frames labelled with >= 1 face)\n")
    print("| variant | frames | ours | MediaPipe m0 @0.5 |")
    print("|---|---|---|---|")
    light: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for s in report["sessions"]:
        for entry in s["light"]:
            for name, pair in entry.items():
                light[name].append(pair)
    for name, pairs in light.items():
        arr = np.array(pairs)
        print(f"| {name} | {len(arr)} | {arr[:, 0].mean():.3f} | {arr[:, 1].mean():.3f} |")
    dark = float(np.array(light["gamma 0.4"])[:, 0].mean())
    print()

    confusion, correct, n, away_permille = cmu_head_pose(gaze)
    labels = ["forward", "left", "right", "up", "down", "unknown", "no face"]
    print("## CMU head pose (stills, per-person robust centre; rows = label)\n")
    print("'unknown' = face detected, mesh unusable, keypoint yaw within tolerance; 'no face' = not detected\n")
    print("| label | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for pose in ("forward", "left", "right", "up"):
        print(f"| {pose} | " + " | ".join(str(confusion[pose].get(p, 0)) for p in labels) + " |")
    print(
        f"\npose accuracy {correct}/{n} = {correct / n:.3f}; looking-away accuracy where a face was found "
        f"{away_permille / 1000:.3f}\n"
    )

    total, ours_voc, base_voc = voc_recall(presence, baseline)
    print(
        f"## PASCAL VOC group photos: face box recall ours {ours_voc}/{total} = {ours_voc / total:.3f}, "
        f"MediaPipe m0 {base_voc}/{total} = {base_voc / total:.3f}\n"
    )
    print(f"(ran in {time.perf_counter() - start:.0f} s)")
    print(
        f"RESULT accuracy face_count_acc={acc:.4f} away_recall={recall:.3f} away_fa_per_h={fa_h:.2f} "
        f"dark_recall={dark:.3f} baseline_face_count_acc={base_acc:.4f}"
    )


if __name__ == "__main__":
    main()
