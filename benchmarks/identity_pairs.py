"""Pair statistics for ``benchmarks/identity.py``: the embedded faces, near-duplicate removal, distance matrices,
same-person and other-person pairs of single frames or templates, TAR at a FAR, and Wilson intervals.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.identity import template

SEP_S = 3.0  # two moments of one clip this far apart in the clip's own time are distinct
DRAWS, SIDES = 40, 8  # same-person template pairs drawn per person; templates per person for other-person pairs
Vec = NDArray[np.float32]
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Face:
    person: str
    photo: str  # the photo or clip (file name; a CMU still's name)
    t_src: float | None  # seconds into the clip; None for a still
    kind: str  # "colour", "relit" (built relit stretches) or "grey" (CMU)
    origin: str  # the session's file name, or "photo" for a picture embedded directly
    vec: Vec = field(repr=False, compare=False)


def dedupe(faces: list[Face]) -> list[Face]:
    seen: dict[tuple[Any, ...], Face] = {}
    for f in faces:
        seen.setdefault((f.person, f.photo, f.kind, f.origin if f.t_src is None else round(f.t_src * 2)), f)
    return list(seen.values())


def distinct(a: Face, b: Face) -> bool:
    """Different photos or clips, or one clip SEP_S or more apart."""
    return a.photo != b.photo or (a.t_src is not None and b.t_src is not None and abs(a.t_src - b.t_src) >= SEP_S)


def matrices(pool: list[Face]) -> tuple[Floats, NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """(n, n) distances, same person, distinct moments, and the upper triangle."""
    d = np.stack([f.vec for f in pool]).astype(np.float64)
    dist = np.sqrt(np.maximum(((d[:, None] - d[None]) ** 2).sum(-1), 0.0))
    person, photo = np.array([f.person for f in pool]), np.array([f.photo for f in pool])
    t = np.array([np.nan if f.t_src is None else f.t_src for f in pool])
    with np.errstate(invalid="ignore"):
        apart = (photo[:, None] != photo[None]) | (np.abs(t[:, None] - t[None]) >= SEP_S)
    return dist, person[:, None] == person[None], apart, np.triu(np.ones((len(pool),) * 2, bool), 1)


def pick(pool: list[Face], order: list[int], k: int, avoid: list[int]) -> list[int] | None:
    """Greedily, k faces of ``order`` from distinct moments, each distinct from every face of ``avoid``."""
    chosen: list[int] = []
    for i in order:
        if i not in avoid and all(distinct(pool[i], pool[j]) for j in chosen + avoid):
            chosen.append(i)
            if len(chosen) == k:
                return chosen
    return None


def pairs(pool: list[Face], ka: int, kb: int, rng: np.random.Generator) -> tuple[Floats, Floats, list[frozenset[str]]]:
    """(same-person distances, different-person distances, the two people of each different-person pair)."""
    if (ka, kb) == (1, 1):
        dist, same, apart, upper = matrices(pool)
        names = [frozenset((pool[i].person, pool[j].person)) for i, j in zip(*np.nonzero(upper & ~same), strict=True)]
        return dist[upper & same & apart], dist[upper & ~same], names
    people: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(pool):
        people[f.person].append(i)
    vec = np.stack([f.vec for f in pool])
    genuine: dict[tuple[frozenset[int], ...], float] = {}
    sides: dict[str, list[tuple[Vec, Vec]]] = defaultdict(list)
    for person, idx in people.items():
        for draw in range(DRAWS + SIDES):
            order = rng.permutation(idx).tolist()
            a = pick(pool, order, ka, [])
            if draw < DRAWS and a and (b := pick(pool, order, kb, a)):
                genuine[(frozenset(a), frozenset(b))] = float(np.linalg.norm(template(vec[a]) - template(vec[b])))
            elif draw >= DRAWS:  # up to k faces, from distinct moments where the person has them
                b_ = pick(pool, order, kb, []) or order[:kb]
                sides[person].append((template(vec[a or order[:ka]]), template(vec[b_])))
    other: list[float] = []
    who: list[frozenset[str]] = []
    for p, q in itertools.combinations(sorted(people), 2):
        for (ta, _), (_, tb) in itertools.product(sides[p], sides[q]):
            other.append(float(np.linalg.norm(ta - tb)))
            who.append(frozenset((p, q)))
    return np.array(list(genuine.values())), np.array(other), who


def tar_at(genuine: Floats, impostor: Floats, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the largest threshold whose FAR (accepting distance < threshold) is at most ``far``."""
    ranked = np.sort(impostor)
    threshold = float(ranked[min(int(far * len(ranked)), len(ranked) - 1)])
    return float(np.mean(genuine < threshold)), threshold


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p, z2 = k / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)
