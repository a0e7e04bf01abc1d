"""Planning for ``benchmarks/devset.py``: the segments of each session (candidate stretches, interludes, cuts),
drawn from a seeded RNG so that two builds plan the same sessions.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.devset_people import POSTERS, VIDEO_TIMELINES, VIEWS
from benchmarks.devset_render import BLOCK, FPS, H, Seg, W, crop_rect, video
from benchmarks.devset_sources import SESSIONS, SessionSpec

SEED = 20261205


# ----------------------------------------------------------------------------------------------- planning
def nq(seconds: float) -> int:
    """Frames for a duration on the 0.2 s grid, at least 0.6 s."""
    return max(3 * BLOCK, round(seconds * FPS / BLOCK) * BLOCK)


def view_seg(root: Path, rng: random.Random, view: str, n: int, framing: str = "full", **kw: Any) -> Seg:
    """A still with a slow zoom (<= 5 %), or a clip window played forward, backwards or there and back."""
    media = VIEWS[view].media
    if media not in VIDEO_TIMELINES:
        return Seg("still", n, view, framing, zoom=rng.uniform(0.0, 0.05), **kw)
    length = len(video(root, media))
    n = min(n, (2 * length - 1) // BLOCK * BLOCK)
    if n <= length:
        s = rng.randint(0, length - n)
        idx = list(range(s, s + n))
        if rng.random() < 0.35:
            idx.reverse()
    else:
        m = rng.randint((n + 2) // 2, length)
        s = rng.randint(0, length - m)
        idx = list(range(s, s + m)) + list(range(s + m - 2, s + m - 2 - (n - m), -1))
    return Seg("clip", n, view, framing, idx=idx, **kw)


def poster_visible(root: Path, view: str, framing: str) -> bool:
    if view not in POSTERS:
        return False
    x, y, w, h = crop_rect(root, VIEWS[view], framing, W / H)
    px, py, pw, ph = POSTERS[view][1]
    return x <= px and y <= py and px + pw <= x + w and py + ph <= y + h


def draw_plan(root: Path, rng: random.Random, spec: SessionSpec) -> list[Seg]:
    target = rng.uniform(*spec.seconds)
    phase = 0

    def cand(seconds: float, light: str = "") -> Seg:
        view, framing = spec.phases[phase]
        poster = spec.poster and poster_visible(root, view, framing)
        return view_seg(root, rng, view, nq(seconds), framing, light=light, poster=poster)

    def interlude(token: str) -> list[Seg]:
        kind, _, arg = token.partition(":")
        if kind == "light":
            return [cand(rng.uniform(4.0, 8.0), arg)]
        if kind == "covered":
            return [Seg("covered", nq(rng.uniform(2.0, 3.0)), cover=arg or "dark")]
        if kind == "bg":
            return [
                Seg("still", nq(rng.uniform(3.0, 6.0)), spec.phases[phase][0], zoom=rng.uniform(0, 0.04), category="bg")
            ]
        if kind == "gone":  # the candidate left: their seat's view is taken by an empty room, the poster stays
            view, framing = spec.phases[phase]
            if not (spec.poster and poster_visible(root, view, framing)):
                raise ValueError(f"{token}: the candidate's view {view} ({framing}) shows no poster to leave behind")
            empty = view_seg(root, rng, arg, nq(rng.uniform(3.0, 7.0)))
            return [replace(empty, zoom=0.0, picture=(view, framing))]
        if kind == "pair":
            n = nq(rng.uniform(3.0, 7.0))
            view, _ = spec.phases[phase]
            me = view_seg(root, rng, view, n, "half")
            other = view_seg(root, rng, arg, n, "half")
            left, right = (me, other) if rng.random() < 0.6 else (other, me)
            return [replace(left, kind="pair", right=right)]
        lo, hi = {"noface": (3.0, 7.0), "neg": (2.4, 5.0), "group": (2.4, 5.0)}[kind]
        return [view_seg(root, rng, arg, nq(rng.uniform(lo, hi)))]

    tokens = list(spec.required)
    rng.shuffle(tokens)
    if len(spec.phases) > 1:
        tokens.insert(len(tokens) // 2 + rng.choice([-1, 0, 0, 1]), "switch")
    segs = [cand(rng.uniform(6.0, 12.0))]
    pool: list[str] = []
    while True:
        must = bool(tokens)
        if not must and not pool:  # extras are drawn without replacement, then the pool is refilled
            pool = rng.sample(spec.extras, len(spec.extras))
        token = tokens.pop(0) if must else pool.pop()
        if token == "switch":
            phase = 1
            segs.append(cand(rng.uniform(5.0, 11.0)))
            continue
        more = [*interlude(token), cand(rng.uniform(4.0, 11.0))]
        if not must and sum(s.n for s in segs + more) / FPS > target:
            return segs
        segs += more


def plan(root: Path, name: str) -> list[Seg]:
    """The session's segments (media under ``root``); a draw outside 45-90 s is redrawn with the next attempt
    (still deterministic)."""
    for attempt in range(200):
        segs = draw_plan(root, random.Random(f"{SEED}-{name}-{attempt}"), SESSIONS[name])
        if nq(45.0) <= sum(s.n for s in segs) <= nq(90.0):
            return segs
    raise RuntimeError(f"{name}: no plan of 45-90 s in 200 attempts")
