"""Identity: how well the face descriptor tells people apart, and what person_changed / identity_mismatch make of it.

Run from the repository root with no arguments: ``python benchmarks/identity.py`` (under a minute on 2 cores once
``.devset-cache/signals`` holds the detectors' answers, as ``benchmarks/accuracy.py`` leaves it, and
``.devset-cache/fairness`` the relit ones, as ``benchmarks/fairness.py`` leaves it; what is missing is computed,
about 15 minutes for the relit sessions). See docs/identity.md.

- **Faces**: each descriptor the detector took (near-frontal faces, every ~3 s and at each track start) outside the
  ignore bands, on intervals showing exactly one known person (built sessions: ``identity``; ``../shared/data``: by
  ``source``), plus the staged photos of ``devset_sources.VIEWS`` and the CMU ``forward`` stills embedded directly.
- **Near-duplicates**: frames of one still, or of one clip at one moment, are one picture re-encoded. Faces are
  deduplicated, and a same-person pair counts only across different photos or clips, or ``SEP_S`` apart in one
  clip's own time. Templates are means of faces from distinct moments; the two sides share no moment.
- **Swaps**: the built person-change sessions and every ordered pair of single-candidate sessions with different
  candidates spliced end to end. Found: person_changed starting within 3 s of the switch; with the first person's
  enrolment (other photos, clips or sessions first), identity_mismatch over the switch + 3 s.
- **False alarms**: both flags on single-candidate sessions (right enrolment), unless they overlap an interval
  showing someone else or 2+ faces (the head-turn interludes of ../shared/data show other people).
- **Lighting**: the samples per candidate, the swaps and the false alarms again on ``benchmarks/fairness.py``'s
  relit signals (gamma 0.4 and 0.25, backlit, low contrast, a dim room), one lighting at a time.

Last line: ``RESULT identity tar_at_far_1pct=.. tar_at_far_01pct=.. swap_recall=.. swap_fa_per_h=.. group_tar_gap=..``
(single frames; the pipeline's flags at its shipped match distance).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and shadow the packages of the same name;
# put this checkout first instead, so a worktree measures its own code and not an installed copy.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import csv
import itertools
import logging
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks import fairness
from benchmarks.accuracy import built_sessions, shared_sessions
from benchmarks.devset_sources import IDENTITIES, VIEWS, staged_path
from benchmarks.identity_pairs import Face, Floats, Vec, dedupe, distinct, matrices, pairs, tar_at, wilson
from benchmarks.session_signals import Detectors, ignored, measured, sampled_frames
from benchmarks.skin_tone import band, ita_degrees, skin_pixels
from core.vocabulary import FlagKind
from detectors import AwayConfig, FrameBatch, GazeDetector, Signals
from detectors.identity import FaceEmbedder, template
from pipelines.analysis import segment_session
from pipelines.decode import DecodeOptions
from pipelines.identity import IdentityRule, descriptors
from pipelines.segments import ExamPolicy, Segment

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
CACHE = REPO / ".devset-cache"
THRESHOLDS = (0.40, 0.45, 0.50, 0.55, 0.60, 0.65)
DLIB, SHIPPED = 0.60, IdentityRule().match_distance  # dlib's own operating point, and ours
RULES = (DLIB, SHIPPED, 0.50)  # the pipeline's flags are run at these match distances
SIZES = {(1, 1): "single frames", (3, 3): "templates of 3", (5, 5): "templates of 5", (5, 1): "template of 5 vs 1"}
WINDOW_MS, MIN_GROUP_PAIRS, ITA_FRAMES, CALLS = 3000, 30, 8, 300
SHARED = (("Proctoring-AI", "proctoring-ai-man"), ("video00", "pexels-woman"), ("image00", "pexels-image00"),
          ("image01", "pexels-image01"))  # fmt: skip
BY_EYE = {"lighter (I-II)": ("very light", "light"), "medium (III-IV)": ("light", "intermediate", "tan"),
          "medium-dark (IV-V)": ("tan", "brown"), "darker (V-VI)": ("brown", "dark")}  # fmt: skip
CLIP_TIME = re.compile(r"@ ([\d.]+)(?:->([\d.]+)->|-)([\d.]+) s( played backwards)?")


@dataclass(frozen=True)
class Run:
    name: str
    video: Path
    truth: dict[str, Any]
    signals: Signals
    candidates: list[str]
    shared: bool
    duration_ms: int


GREYSCALE_PEOPLE = frozenset({"facexlib-elderly-man"})
"""Built-corpus people known only from greyscale pictures (docs/devset.md); with the CMU people they are never
compared: the detector samples only faces in colour, where a descriptor tells people apart."""


def greyscale(person: str) -> bool:
    return person.startswith("cmu-") or person in GREYSCALE_PEOPLE


def person_of(interval: dict[str, Any], shared: bool) -> str | None:
    """Who the interval shows, when it shows exactly one known person."""
    if interval["faces"] != 1:
        return None
    if not shared:
        return interval.get("identity") if interval.get("category") == "candidate" else None
    source = str(interval["source"])
    if m := re.search(r"cmu_faces[^#]*#([a-z]+)_", source):
        return f"cmu-{m.group(1)}"
    return next((who for key, who in SHARED if key in source), None)


def photo_and_time(source: str, elapsed_s: float) -> tuple[str, float | None]:
    """The photo or clip an interval's source names, and for a clip the clip's time ``elapsed_s`` into it."""
    if "#" in source:
        return source.split("#", 1)[1].split(" ", 1)[0], None
    name, clock = re.search(r"([\w.-]+\.(?:mp4|jpg|png))", source), CLIP_TIME.search(source)
    photo = name.group(1) if name else source
    if clock is None:
        return photo, None
    a, turn, c = float(clock.group(1)), clock.group(2), float(clock.group(3))
    if turn is not None:  # forward from a to the turn, then back towards c
        b = float(turn)
        return photo, a + elapsed_s if elapsed_s <= b - a else b - (elapsed_s - (b - a))
    return photo, c - elapsed_s if clock.group(4) else a + elapsed_s


def load_runs(detectors: Detectors) -> list[Run]:
    runs = []
    for shared, entries in ((True, shared_sessions()), (False, built_sessions())):
        for video, truth, _, _ in entries:
            # lighting=shared: the cache entries of benchmarks/accuracy.py (it does not change the signals)
            signals = measured(detectors, video, truth, CACHE, lighting=shared).signals
            who = [person_of(truth["intervals"][0], True)] if shared else truth["candidates"]
            duration = round(float(truth["duration_s"]) * 1000)
            runs.append(Run(video.name, video, truth, signals, [str(w) for w in who], shared, duration))
    return runs


def session_faces(run: Run) -> list[tuple[Face, int]]:
    """(face, time ms) of every embedded frame outside the ignore bands that shows one known person."""
    out = []
    rows, found = descriptors(run.signals)
    for row, vec in zip(rows.tolist(), found, strict=True):
        t = int(run.signals.timestamps_ms[row])
        iv = next((i for i in run.truth["intervals"] if i["start_s"] <= t / 1000 < i["end_s"]), None)
        person = None if iv is None or ignored(run.truth, t) else person_of(iv, run.shared)
        if iv is None or person is None:
            continue
        photo, t_src = photo_and_time(str(iv["source"]), t / 1000 - iv["start_s"])
        lit = iv.get("lighting", "normal") == "normal"
        kind = "grey" if person.startswith("cmu-") else "colour" if lit else "relit"
        out.append((Face(person, photo, t_src, kind, run.name, vec.astype(np.float32)), t))
    return out


def embed_still(gaze: GazeDetector, emb: FaceEmbedder, rgb: NDArray[np.uint8]) -> tuple[Vec, Floats] | None:
    _, mains = gaze.run(FrameBatch(np.ascontiguousarray(rgb)[None], np.zeros(1, np.int64)))
    points = mains[0].points
    return None if points is None else (emb.embed(emb.chip(np.ascontiguousarray(rgb), points)[None])[0], points)


def photo_faces(gaze: GazeDetector, emb: FaceEmbedder) -> tuple[list[Face], dict[str, list[float]]]:
    """The staged photos of the built corpus's people and the CMU forward stills, embedded directly; and the
    ITA of each colour photo's face, per person."""
    faces: list[Face] = []
    ita: dict[str, list[float]] = defaultdict(list)
    for view in VIEWS.values():
        path = staged_path(CACHE, view.media)
        if view.identity is None or path.suffix == ".mp4":
            continue
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        box = np.array([0, 0, img.shape[1], img.shape[0]])
        if view.face is not None:  # the face and a face's width or height around it
            x, y, w, h = view.face
            box = np.array([max(0, x - w), max(0, y - h), x + 2 * w, y + 2 * h])
        if view.bounds is not None:
            box = np.concatenate([np.maximum(box[:2], view.bounds[:2]), np.minimum(box[2:], view.bounds[2:])])
        crop = np.ascontiguousarray(img[box[1] : box[3], box[0] : box[2]])
        if got := embed_still(gaze, emb, crop):
            faces.append(Face(view.identity, path.name, None, "colour", "photo", got[0]))
            ita[view.identity] += [v for v in [ita_degrees(skin_pixels(crop, got[1]))] if v is not None]
    for row in csv.DictReader((DATA / "frames/cmu/labels.csv").open()):
        grey = cv2.imread(str(DATA / "frames/cmu" / row["file"]), cv2.IMREAD_GRAYSCALE)
        if row["pose"] == "forward" and (got := embed_still(gaze, emb, np.repeat(grey[:, :, None], 3, axis=2))):
            faces.append(Face(f"cmu-{row['person']}", Path(row["file"]).stem, None, "grey", "photo", got[0]))
    return faces, ita


def decode_again(
    runs: list[Run], timed: list[tuple[Face, int]], gaze: GazeDetector
) -> tuple[dict[str, list[float]], list[tuple[NDArray[np.uint8], Floats]]]:
    """ITA per person on up to ITA_FRAMES embedded colour frames from distinct moments or sessions (decoded
    again, the mesh run on each), and those frames with their landmarks, for timing."""
    wanted: dict[str, dict[int, str]] = defaultdict(dict)
    taken: dict[str, list[Face]] = defaultdict(list)
    for f, t in timed:
        mine = taken[f.person]
        new = all(distinct(f, g) or f.origin != g.origin for g in mine)
        if f.kind == "colour" and len(mine) < ITA_FRAMES and new:
            mine.append(f)
            wanted[f.origin][t] = f.person
    ita: dict[str, list[float]] = defaultdict(list)
    frames = []
    for run in (r for r in runs if r.name in wanted):
        want = wanted[run.name]
        for t, img in sampled_frames(run.video, DecodeOptions().sample_fps):
            if t > max(want):
                break
            _, mains = gaze.run(FrameBatch(img[None], np.array([t], np.int64))) if t in want else (None, [None])
            if mains[0] is not None and (points := mains[0].points) is not None:
                ita[want[t]] += [v for v in [ita_degrees(skin_pixels(img, points))] if v is not None]
                frames.append((img, points))
    return ita, frames


def flags(signals: Signals, duration_ms: int, enrolment: Vec | None, rule: IdentityRule) -> list[Segment]:
    policy, away = ExamPolicy(), AwayConfig()
    segments, _ = segment_session(signals, policy, away, duration_ms=duration_ms, enrolment=enrolment, identity=rule)
    return [s for s in segments if s.kind in (FlagKind.PERSON_CHANGED, FlagKind.IDENTITY_MISMATCH)]


def enrolment(pool: list[Face], person: str, run: Run, shown: set[str]) -> tuple[Vec | None, str]:
    """The person's template of up to 5 distinct moments outside ``run``, photos and clips it does not show first."""
    mine = [f for f in pool if f.person == person and f.kind != "relit" and f.origin != run.name]
    chosen: list[Face] = []
    for f in sorted(mine, key=lambda f: (f.photo in shown, f.origin != "photo")):
        if len(chosen) < 5 and all(distinct(f, g) for g in chosen):
            chosen.append(f)
    how = f"{len(chosen)} faces, {sum(f.photo not in shown for f in chosen)} from pictures the session does not show"
    return (template(np.stack([f.vec for f in chosen])) if chosen else None), how


@dataclass
class Checks:
    """The pipeline's identity flags at one match distance: swaps found, and false alarms (colour, greyscale)."""

    found: dict[str, list[tuple[bool, bool]]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)
    alarms: dict[str, list[int]] = field(default_factory=lambda: {"colour": [0, 0], "greyscale": [0, 0]})
    hours: dict[str, float] = field(default_factory=lambda: {"colour": 0.0, "greyscale": 0.0})
    excused: int = 0


def pipeline_checks(runs: list[Run], pool: list[Face], shown: dict[str, set[str]], rule: IdentityRule) -> Checks:
    out = Checks()

    def swap(kind: str, what: str, signals: Signals, duration_ms: int, switch: int, enrol: Vec | None) -> None:
        segs = flags(signals, duration_ms, enrol, rule)
        pc = [s for s in segs if s.kind is FlagKind.PERSON_CHANGED and abs(s.start_ms - switch) <= WINDOW_MS]
        mm = [s for s in segs if s.kind is FlagKind.IDENTITY_MISMATCH and s.start_ms <= switch + WINDOW_MS < s.end_ms]
        out.found[kind].append((bool(pc), bool(mm)))
        early = [s for s in mm if s.start_ms < switch - WINDOW_MS]
        if not pc or not mm or early:
            out.notes.append(
                f"{what} at {switch / 1000:.1f} s: person_changed {'found' if pc else 'missed'}, identity_mismatch "
                f"{'found' if mm else 'missed'}" + (f" (since {early[0].start_ms / 1000:.1f} s)" if early else "")
            )

    for run in (r for r in runs if len(r.candidates) == 2):
        switch = next(i["start_s"] for i in run.truth["intervals"] if i.get("identity") == run.candidates[1])
        enrol, _ = enrolment(pool, run.candidates[0], run, shown[run.name])
        what = f"{run.name} {' -> '.join(run.candidates)}"
        swap("built person_change", what, run.signals, run.duration_ms, round(1000 * switch), enrol)
    single = [r for r in runs if len(r.candidates) == 1]
    first = {r.candidates[0]: r for r in reversed(single)}  # each candidate's first session
    for a, b in itertools.permutations(first.values(), 2):
        tail = Signals(b.signals.timestamps_ms + a.duration_ms, dict(b.signals.columns))
        grey = greyscale(a.candidates[0]) or greyscale(b.candidates[0])
        kind = "spliced, greyscale involved (not compared, by design)" if grey else "spliced, colour"
        what = f"{a.candidates[0]} ({a.name}) + {b.candidates[0]} ({b.name})"
        enrol, _ = enrolment(pool, a.candidates[0], a, shown[a.name])
        swap(kind, what, Signals.concat([a.signals, tail]), a.duration_ms + b.duration_ms, a.duration_ms, enrol)
    for run in single:
        enrol, how = enrolment(pool, run.candidates[0], run, shown[run.name])
        group = "greyscale" if greyscale(run.candidates[0]) else "colour"
        out.hours[group] += run.duration_ms / 3.6e6
        others = [(i["start_s"] * 1000, i["end_s"] * 1000) for i in run.truth["intervals"]
                  if i["faces"] >= 2 or person_of(i, run.shared) not in (None, run.candidates[0])]  # fmt: skip
        for s in flags(run.signals, run.duration_ms, enrol, rule):
            if any(s.start_ms < b and a < s.end_ms for a, b in others):
                out.excused += 1
                continue
            out.alarms[group][s.kind is FlagKind.IDENTITY_MISMATCH] += 1
            out.notes.append(
                f"false alarm: {run.name} ({run.candidates[0]}; enrolment {how}): {s.kind.value} "
                f"{s.start_ms / 1000:.1f}-{s.end_ms / 1000:.1f} s, {s.details.get('samples')} samples, "
                f"median {s.details.get('median_distance')}"
            )
    return out


def under_lighting(det: Detectors, runs: list[Run], pool: list[Face], shown: dict[str, set[str]]) -> None:
    """The pipeline's identity flags on ``benchmarks/fairness.py``'s relit signals (its cache, computed when
    missing): samples per candidate, then swaps and false alarms per lighting, with the enrolments as recorded."""
    sessions = {s.name: s for s in fairness.load_sessions() if s.relit}
    relit = {r.name: fairness.cached_pass(det, sessions[r.name], r.signals)[1] for r in runs if r.name in sessions}
    names = list(fairness.RELIGHT)
    print("## Identity under the fairness report's lighting (its relit sessions; shipped match distance)\n")
    print(f"| candidate | samples: normal | {' | '.join(names)} |\n" + "|---" * (2 + len(names)) + "|")
    for run in (r for r in runs if r.name in relit and len(r.candidates) == 1):
        counts = [len(descriptors(relit[run.name].get(n, run.signals))[0]) for n in names]
        print(f"| {run.candidates[0]} ({run.name}) | {len(descriptors(run.signals)[0])} | "
              + " | ".join(map(str, counts)) + " |")  # fmt: skip
    hours = sum(r.duration_ms for r in runs if r.name in relit and len(r.candidates) == 1) / 3.6e6
    print(f"\nSingle-candidate sessions: {hours:.2f} h relit; the others keep their normal-light signals.\n")
    print("| lighting | colour swaps: person_changed / identity_mismatch found | false alarms (hours) |\n|---|---|---|")
    for name in names:
        lit = [replace(r, signals=relit[r.name][name]) if name in relit.get(r.name, {}) else r for r in runs]
        c = pipeline_checks(lit, pool, shown, IdentityRule())
        colour = [x for kind, v in c.found.items() if "greyscale" not in kind for x in v]
        found = " / ".join(f"{sum(x[j] for x in colour)}/{len(colour)}" for j in (0, 1))
        print(f"| {name} | {found} | {sum(map(sum, c.alarms.values()))} ({sum(c.hours.values()):.2f}) |")
    print()


def roc(colour: list[Face], grey: list[Face], relit: list[Face], rng: np.random.Generator) -> tuple[Floats, Floats]:
    sets = {size: pairs(colour, *size, rng) for size in SIZES}
    print("## ROC: colour faces in normal light (accept when distance < threshold)\n")
    print("| threshold | " + " | ".join(f"{name}: TAR / FAR" for name in SIZES.values()) + " |")
    print("|---" * (1 + len(SIZES)) + "|")
    for t in THRESHOLDS:
        row = " | ".join(f"{np.mean(g < t):.3f} / {np.mean(i < t):.4f}" for g, i, _ in sets.values())
        print(f"| {t:.2f} | {row} |")
    print(
        "\n| comparison | same-person pairs | other-person pairs (people pairs) | TAR @ FAR 1% (threshold; pairs "
        "below) | TAR @ FAR 0.1% (threshold; pairs below) | TAR / FAR @ 0.6 |\n|---|---|---|---|---|---|"
    )
    for size, (g, i, who) in sets.items():
        cells: list[str] = []
        for far in (0.01, 0.001):
            tar, thr = tar_at(g, i, far)
            below, people = int(np.sum(i < thr)), {w for w, d in zip(who, i.tolist(), strict=True) if d < thr}
            thin = ": too few to mean much" if below < 10 or len(people) < 3 else ""
            cells.append(f"{tar:.3f} ({thr:.3f}; {below} pairs of {len(people)} people pairs{thin})")
        print(f"| {SIZES[size]} | {len(g)} | {len(i)} ({len(set(who))}) | {' | '.join(cells)} "
              f"| {np.mean(g < 0.6):.3f} / {np.mean(i < 0.6):.4f} |")  # fmt: skip
    dist, same, apart, upper = matrices(colour)
    rows = [("same still, or one clip < 3 s apart (near-duplicates)", dist[upper & same & ~apart], sets[(1, 1)][1])]
    rows.append(("CMU greyscale (64x60 upscaled), different stills, vs other CMU people", *pairs(grey, 1, 1, rng)[:2]))
    dist, same, _, _ = matrices(relit + colour)
    lit = np.arange(len(relit) + len(colour))[:, None] < len(relit)
    lit = lit & ~lit.T
    rows.append(("relit (dark, backlit, low contrast) vs normal light", dist[lit & same], dist[lit & ~same]))
    print("\n| other single-frame pairs | same-person pairs | TAR @ 0.5 / 0.55 / 0.6 | other-person pairs "
          "| FAR @ 0.5 / 0.55 / 0.6 | TAR @ FAR 1% (threshold) |\n|---|---|---|---|---|---|")  # fmt: skip
    for label, g, i in rows:
        tar, thr = tar_at(g, i, 0.01)
        rates = [" / ".join(f"{np.mean(x < t):.{p}f}" for t in (0.5, 0.55, 0.6)) for x, p in ((g, 3), (i, 4))]
        print(f"| {label} | {len(g)} | {rates[0]} | {len(i)} | {rates[1]} | {tar:.3f} ({thr:.3f}) |")
    print()
    return sets[(1, 1)][0], sets[(1, 1)][1]


def skin(colour: list[Face], ita: dict[str, list[float]]) -> float:
    """ITA per person, then TAR and FAR per ITA band and per band by eye; returns the TAR gap between ITA bands."""
    dist, same, apart, upper = matrices(colour)
    person = np.array([f.person for f in colour])
    print("## Skin tone: ITA on the cheeks, median over normally lit colour frames and photos\n")
    print("| person | frames | ITA median (IQR) | band | by eye (docs/devset.md) | note |\n|---|---|---|---|---|---|")
    bands: dict[str, str] = {}
    for p in sorted(set(person.tolist())):
        values, eye = np.array(ita.get(p, [])), IDENTITIES.get(p, ("", ""))[1]
        q1, median, q3 = np.percentile(values, [25, 50, 75]) if values.size else (math.nan,) * 3
        bands[p] = band(float(median)) if values.size else "no colour"
        off = bool(eye) and bands[p] not in BY_EYE.get(eye, (bands[p],))
        checks = (("IQR > 15 deg", q3 - q1 > 15), ("< 3 frames", values.size < 3), ("not as by eye", off))
        notes = [n for n, bad in checks if bad]
        print(f"| {p} | {values.size} | {median:.1f} ({q1:.1f} to {q3:.1f}) | {bands[p]} | {eye or '-'} "
              f"| {'unreliable: ' + ', '.join(notes) if notes else ''} |")  # fmt: skip
    gaps = []
    by_eye = {p: v[1] for p, v in IDENTITIES.items()}
    for title, group_of in (("ITA band", bands), ("band by eye (built corpus)", by_eye)):
        print(
            f"\n| {title} | people (those with same-person pairs) | same-person pairs | TAR @ {DLIB} (95% Wilson) "
            f"| TAR @ {SHIPPED} (95% Wilson) | other-person pairs inside | FAR inside @ {DLIB} / {SHIPPED} |"
        )
        print("|---|---|---|---|---|---|---|")
        group = np.array([group_of.get(p, "") for p in person.tolist()])
        tars = []
        for name in sorted(set(group.tolist()) - {""}):
            inside = group == name
            g, i = dist[upper & same & apart & inside[:, None]], dist[upper & ~same & inside[:, None] & inside[None]]
            paired = sorted({person[a] for a in np.nonzero(upper & same & apart & inside[:, None])[0].tolist()})
            cells = []
            for t in (DLIB, SHIPPED):
                k = int(np.sum(g < t))
                cells.append(f"{k / len(g):.3f} ({'-'.join(f'{x:.3f}' for x in wilson(k, len(g)))})" if len(g) else "-")
            tars += [float(np.mean(g < SHIPPED))] if len(g) >= MIN_GROUP_PAIRS else []
            far = " / ".join(f"{np.mean(i < t):.4f}" for t in (DLIB, SHIPPED)) if len(i) else "-"
            print(f"| {name} | {len(set(person[inside]))} ({', '.join(paired) or 'none'}) | {len(g)} | {cells[0]} "
                  f"| {cells[1]} | {len(i)} | {far} |")  # fmt: skip
        gaps.append(max(tars) - min(tars) if len(tars) >= 2 else math.nan)
    print(f"\nTAR gap @ {SHIPPED} between groups with >= {MIN_GROUP_PAIRS} same-person pairs: ITA bands {gaps[0]:.3f}, "
          f"bands by eye {gaps[1]:.3f}\n")  # fmt: skip
    return gaps[0]


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)
    if not DATA.is_dir():
        raise SystemExit(f"expected the development set at {DATA}; it is not there")
    start = time.perf_counter()
    detectors = Detectors()
    gaze, emb = detectors.analysis.gaze, FaceEmbedder()
    runs = load_runs(detectors)
    timed = [ft for run in runs for ft in session_faces(run)]
    photos, photo_ita = photo_faces(gaze, emb)
    pool = dedupe([f for f, _ in timed] + photos)
    print(f"## Faces: {len(timed)} embedded session frames showing one known person, {len(photos)} photos and "
          f"stills; {len(pool)} after removing near-duplicates\n")  # fmt: skip
    print("| person | kind | faces | pictures | same-person pairs | their distances: median (max) | closest other |")
    print("|---|---|---|---|---|---|---|")
    dist, same, apart, upper = matrices(pool)
    kinds = np.array([f.kind for f in pool])
    for p, kind in sorted({(f.person, f.kind) for f in pool}):
        mine = np.array([f.person == p for f in pool]) & (kinds == kind)
        d = dist[upper & apart & mine[:, None] & mine[None]]
        others = np.nonzero(~same[np.argmax(mine)] & ((kinds == kind) | (kind == "relit") & (kinds == "colour")))[0]
        near = dist[np.ix_(mine, others)].min(0)
        print(f"| {p} | {kind} | {mine.sum()} | {len({f.photo for f, m in zip(pool, mine, strict=True) if m})} "
              f"| {d.size} | {f'{np.median(d):.3f} ({d.max():.3f})' if d.size else '-'} "
              f"| {pool[others[np.argmin(near)]].person} ({near.min():.3f}) |")  # fmt: skip
    print()
    colour = [f for f in pool if f.kind == "colour"]
    grey, relit = [f for f in pool if f.kind == "grey"], [f for f in pool if f.kind == "relit"]
    g1, i1 = roc(colour, grey, relit, np.random.default_rng(7))
    (tar1, thr1), (tar01, thr01) = tar_at(g1, i1, 0.01), tar_at(g1, i1, 0.001)
    print(f"Single frames: dlib's {DLIB} gives TAR {np.mean(g1 < DLIB):.3f} at FAR "
          f"{np.mean(i1 < DLIB):.4f}; the shipped {SHIPPED} gives TAR {np.mean(g1 < SHIPPED):.3f} at FAR "
          f"{np.mean(i1 < SHIPPED):.4f}. FAR 1% "
          f"needs {thr1:.3f} (TAR {tar1:.3f}), FAR 0.1% {thr01:.3f} (TAR {tar01:.3f}).\n")  # fmt: skip
    ita, frames = decode_again(runs, timed, gaze)
    for p, values in photo_ita.items():
        ita[p] += values
    gap = skin(colour, ita)

    shown: dict[str, set[str]] = defaultdict(set)
    for f, _ in timed:
        shown[f.origin].add(f.photo)
    print("## The pipeline's identity flags (segment_session, default exam policy) at three match distances\n")
    print("| match distance | swaps | person_changed found | identity_mismatch found | false alarms: person_changed / "
          "identity_mismatch (hours) | per hour |\n|---|---|---|---|---|---|")  # fmt: skip
    checks = {}
    for distance in RULES:
        c = checks[distance] = pipeline_checks(runs, pool, shown, IdentityRule(match_distance=distance))
        for kind in [*sorted(c.found), "all"]:
            got = [x for k, v in c.found.items() if kind in ("all", k) for x in v]
            found = [f"{sum(x[j] for x in got)}/{len(got)}" for j in (0, 1)]
            print(f"| {distance:.2f} | {kind} | {found[0]} | {found[1]} | | |")
        for group in [*c.alarms, "all"]:
            pc, mm = (sum(c.alarms[k][j] for k in c.alarms if group in ("all", k)) for j in (0, 1))
            hours = sum(h for k, h in c.hours.items() if group in ("all", k))
            rate = (pc + mm) / hours
            print(f"| {distance:.2f} | no swap: {group} sessions | | | {pc} / {mm} ({hours:.2f}) | {rate:.2f} |")
    shipped = checks[SHIPPED]
    print(f"\nAt {SHIPPED} ({shipped.excused} flags over someone else or 2+ faces not counted):"
          + "".join(f"\n- {n}" for n in shipped.notes) + "\n")  # fmt: skip
    # Swaps the check can decide: both people in colour. A greyscale face is never compared (see GREYSCALE_PEOPLE).
    decidable = [x[0] for kind, v in shipped.found.items() if "greyscale" not in kind for x in v]
    swap_recall = float(np.mean(decidable))
    every = [x[0] for v in shipped.found.values() for x in v]
    print(
        f"swap recall: {swap_recall:.3f} on {len(decidable)} swaps between people in colour; "
        f"{np.mean(every):.3f} on all {len(every)}, greyscale included\n"
    )
    fa_per_h = sum(map(sum, shipped.alarms.values())) / sum(shipped.hours.values())
    under_lighting(detectors, runs, pool, shown)

    times = []
    for k in range(CALLS + 10):
        img, points = frames[k % len(frames)]
        t0 = time.perf_counter()
        emb.embed(emb.chip(img, points)[None])
        times += [time.perf_counter() - t0] if k >= 10 else []  # the first 10 warm up
    embedded = sum(len(descriptors(r.signals)[0]) for r in runs)
    sampled = sum(len(r.signals) for r in runs)
    ms = 1000 * float(np.median(times))
    print(f"## Cost: chip + descriptor {ms:.1f} ms per embedded frame (median of {CALLS} calls on {len(frames)} "
          f"session frames); {embedded} of {sampled} sampled frames embedded ({embedded / sampled:.3f}), so "
          f"{ms * embedded / sampled:.2f} ms per sampled frame at {DecodeOptions().sample_fps:g} fps\n")  # fmt: skip
    print(f"(ran in {time.perf_counter() - start:.0f} s)")
    print(f"RESULT identity tar_at_far_1pct={tar1:.3f} tar_at_far_01pct={tar01:.3f} swap_recall={swap_recall:.3f} "
          f"swap_fa_per_h={fa_per_h:.2f} group_tar_gap={gap:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
