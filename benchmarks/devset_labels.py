"""Labels for ``benchmarks/devset.py``: what each rendered frame shows (faces, gaze, identity, lighting,
source), and the per-frame labels merged into the intervals of the ground-truth JSON.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from benchmarks.devset_media import MEDIA
from benchmarks.devset_people import BACKGROUNDS, POSTERS, VIDEO_TIMELINES, VIEWS
from benchmarks.devset_render import BLOCK, COVERS, FPS, Seg, ref

LIGHTING = {
    "gamma0.4": ("gamma_dark", "gamma 0.4"),
    "gamma0.25": ("gamma_dark", "gamma 0.25"),
    "backlit": ("backlit", "bright background, face darkened"),
    "lowcontrast": ("low_contrast", "contrast x0.3 around mid-grey"),
    "": ("normal", ""),
}


# ------------------------------------------------------------------------------------------------- labels
def half_label(seg: Seg, j: int) -> tuple[dict[str, Any], float | None]:
    """Labels of one view's frame j (no pair logic) and the source time for clips."""
    v = VIEWS[seg.view]
    lab: dict[str, Any] = {
        "faces": v.faces,
        "looking_away": v.away,
        "trust": v.trust,
        "note": v.note,
        "identity": v.identity,
        "others": list(v.others),
        "category": v.category,
        "glasses": v.glasses,
        "poster": seg.poster,
        "covered": False,
    }
    t = None
    if seg.idx:
        t = seg.idx[j] / FPS
        row = next(r for r in VIDEO_TIMELINES[v.media] if r[0] - 1e-9 <= t < r[1])
        lab["looking_away"] = row[2] if v.faces == 1 else None
        lab["note"] = f"{v.note} {row[3]}".strip() if v.faces else f"{v.note}; no face"
    if seg.category == "bg":
        lab.update(
            faces=0,
            looking_away=None,
            trust="high",
            identity=None,
            glasses=None,
            category="no_face",
            note="background of the candidate's own photo beside them: nobody in view",
        )
    if seg.picture is not None:
        lab.update(
            faces=0,
            looking_away=None,
            identity=None,
            glasses=None,
            category="negative_picture",
            poster=True,
            note=f"{v.note}; the candidate has left, only the framed picture behind their seat is in view",
        )
    if v.category == "candidate" and seg.category != "bg":
        lab["note"] = f"candidate: {lab['note']}"
    return lab, t


def frame_label(seg: Seg, j: int) -> tuple[dict[str, Any], Any]:
    cat, detail = LIGHTING[seg.light]
    if seg.kind == "covered":
        return {
            "faces": 0,
            "looking_away": None,
            "trust": "high",
            "note": f"camera covered: {COVERS[seg.cover].note}",
            "identity": None,
            "others": [],
            "category": "covered_camera",
            "glasses": None,
            "poster": False,
            "covered": True,
            "lighting": "normal",
            "source_key": "synthetic",
            "source_keys": [],
            "_src": ("synthetic", f"covered lens ({seg.cover}: rendered, no source media)"),
        }, None
    lab, t = half_label(seg, j)
    v = VIEWS[seg.view]
    keys = [MEDIA[v.media].package]
    src = f"{ref(v.media)}"
    if seg.poster:
        keys.append(MEDIA[POSTERS[seg.view][0]].package)
    if seg.picture is not None:
        keys.append(MEDIA[POSTERS[seg.picture[0]][0]].package)
    if seg.kind == "pair" and seg.right is not None:
        rl, t2 = half_label(seg.right, j)
        rv = VIEWS[seg.right.view]
        keys.append(MEDIA[rv.media].package)
        cand, other = (lab, rl) if rv.category == "second_person" else (rl, lab)
        lab = {
            **cand,
            "faces": min(2, lab["faces"] + rl["faces"]),
            "looking_away": None,
            "trust": "medium",
            "category": "second_person",
            "others": [other["identity"]],
            "note": f"two real pictures side by side, {lab['faces'] + rl['faces']} faces (left: {lab['note']}; "
            f"right: {rl['note']})",
        }
        src = f"side by side: left {src} | right {ref(rv.media)}"
        t = t if t is not None else t2
    lab.update(lighting=cat, source_key=keys[0], source_keys=sorted(set(keys)))
    if lab["faces"] != 1:
        lab["looking_away"] = None
    extra = f", framing {seg.framing}" if seg.framing != "full" else ""
    if seg.category == "bg":
        extra = ", crop of the background ({}, {}, {}, {})".format(*BACKGROUNDS[seg.view])
    if seg.kind == "still":
        extra += f" (still), zoom 1.00->{1 + seg.zoom:.2f}"
    if detail:
        extra += f", lighting {detail}"
        lab["lighting_detail"] = detail
    if seg.poster:
        extra += f", poster {ref(POSTERS[seg.view][0])} pasted on the wall at {POSTERS[seg.view][1]}"
    if seg.picture is not None:
        view, framing = seg.picture
        extra += f", poster {ref(POSTERS[view][0])} left where {view}'s view ({framing}) shows it"
    return lab, ((seg.view, seg.kind), src + extra, t)


def fmt_src(src: str, ts: list[Any]) -> str:
    times = [t for t in ts if t is not None]
    if not times:
        return src
    step = 1 / FPS
    if all(b > a for a, b in itertools.pairwise(times)):
        return f"{src} @ {times[0]:.2f}-{times[-1] + step:.2f} s"
    if all(b < a for a, b in itertools.pairwise(times)):
        return f"{src} @ {times[-1]:.2f}-{times[0] + step:.2f} s played backwards"
    turn = max(times) if times[1] > times[0] else min(times)
    return f"{src} @ {times[0]:.2f}->{turn:.2f}->{times[-1]:.2f} s (played forward, then back)"


def intervals_of(labels: list[tuple[dict[str, Any], Any]], seg_of: list[int]) -> list[dict[str, Any]]:
    """Per 0.2 s block labels merged into intervals; a block whose frames disagree gets looking_away null."""
    out: list[dict[str, Any]] = []
    for b0 in range(0, len(labels), BLOCK):
        grp = labels[b0 : b0 + BLOCK]
        lab, meta = dict(grp[0][0]), grp[0][1]
        if len({g[0]["looking_away"] for g in grp}) > 1:  # a gaze change inside the block
            nulls = [g[0] for g in grp if g[0]["looking_away"] is None]
            lab = dict(nulls[0] if nulls else grp[-1][0])
            lab["looking_away"] = None
        elif any(g[0] != lab for g in grp):  # only the note changes: the block takes the later note
            lab = dict(grp[-1][0])
        key = (seg_of[b0], json.dumps(lab, sort_keys=True))
        ts = [g[1][2] if g[1] else None for g in grp]
        cur = out[-1] if out else None
        if cur and cur["_k"] == key:
            cur["end_s"] = round((b0 + BLOCK) / FPS, 3)
            cur["_t"] += ts
            continue
        src = meta[1] if meta else lab.pop("_src")[1]
        lab.pop("_src", None)
        out.append(
            {
                "start_s": round(b0 / FPS, 3),
                "end_s": round((b0 + BLOCK) / FPS, 3),
                **lab,
                "_k": key,
                "_src": src,
                "_t": ts,
            }
        )
    order = [
        "start_s",
        "end_s",
        "faces",
        "looking_away",
        "source",
        "trust",
        "note",
        "identity",
        "others",
        "category",
        "lighting",
        "lighting_detail",
        "glasses",
        "poster",
        "covered",
        "source_key",
        "source_keys",
    ]
    final = []
    for iv in out:
        iv["source"] = fmt_src(iv.pop("_src"), iv.pop("_t"))
        iv.pop("_k")
        iv.setdefault("lighting_detail", "")
        if iv["faces"] == 1 and iv["looking_away"] is None and "unknown" not in iv["note"]:
            iv["note"] += "; looking_away unknown"
        final.append({k: iv[k] for k in order})
    return final
