"""Face presence: how many faces are in each frame, how sure, how big.

Two BlazeFace passes, because neither alone is good enough on webcam footage (measured on the dev
sessions, see docs/detectors.md):
- the full-range model (192x192) finds small and far faces, e.g. a second person behind the
  candidate, but loses near-profile and tilted heads;
- the short-range model (128x128) keeps near-profile heads but misses faces below about a tenth
  of the frame, and fires on hands at scores up to ~0.65.
A short-range face that the full-range pass did not also find, and that scores below
``verify_below``, must be confirmed by the face mesh's face score (``verify_min_landmark_score``):
a hand turning a cup scores < 0.01 there, a profile face usually well above. Frames are
letterboxed, never stretched, so a 1280x720 frame keeps its face shapes.

The full-range pass is the most expensive model here (192x192, about twice the short-range
model's time, plus a non-integer resize of the frame), and the faces only it finds (small, far,
behind the candidate) rarely come and go within a second. So it runs at most once per
``full_range_every_ms`` (default 1000 ms; the first frame of each batch always runs), and the faces
it found that the short-range pass missed are carried to the frames in between
(``FacePresenceDetector.count_carried``). The trade-off: a small or far face that appears or leaves
is counted up to that long late; faces the short-range model finds are still looked for on every
frame. Frames that only carry a result report ``small_face_checked = 0``; ``full_range_every_ms = 0``
runs the pass on every frame.

A full-range face scoring just under its threshold (0.5-0.6) counts where two other models are sure of it: the
face mesh (0.5 or more) and the face verifier (judged, and accepted). On the development sessions, one frame a
second, such faces were a man in three-quarter view beside another (mesh 0.99-1.0, verifier 0.975-0.984) and,
refused, crowd and background patches (mesh 0.03 or less, verifier 0.23 or less).

A third, tiled pass looks for faces too small for either whole-frame pass: the full-range model on 2x2
overlapping tiles (faces magnified ~1.8x), keeping only faces below ``tile_max_face_px`` that the face
mesh confirms. On 640x480 composites the whole-frame passes missed a second face of 26-58 px in 8 of 11
placements; the tiles found all 11. Magnified tiles also find knuckles and fingers as faces, hence the
mesh check on every tile face. It runs once per ``tile_every_ms`` (default 3 s: it costs about four
full-range passes) and its faces are carried in between while the face mesh still confirms them at
the same place (so one that leaves, or a cut, ends the carry); a far face that appears is counted up
to 3 s late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .blazeface import FULL_RANGE, SHORT_RANGE, BlazeFace, Faces
from .face_verifier import FaceVerifier, HumanFaceRule
from .imaging import brightened
from .mesh import FaceMesh, roi_from_box
from .plausibility import PictureFrameRule, PlausibilityRule, pictures, plausible
from .runtime import RuntimeConfig
from .seams import FrameBatch, Signals

__all__ = ["COLUMNS", "FacePresenceConfig", "FacePresenceDetector", "distinct", "overlaps", "rate_mask", "tile_boxes"]

COLUMNS = {
    "face_count": "counted faces: passing the score, size and verification rules (0, 1, 2, ...)",
    "face_score_max": "highest detection score among counted faces (0..1), 0 without a face",
    "face_size_px": "size (sqrt of box area, frame pixels) of the largest counted face; NaN without a face",
    "face_cx": "centre x of the largest counted face, in frame widths (0..1); NaN without a face",
    "face_cy": "centre y of the largest counted face, in frame heights (0..1); NaN without a face",
    "second_face_size_px": "size of the second-largest counted face; NaN with fewer than two",
    "face_x_px": "centre x of the largest counted face, frame pixels; NaN without a face",
    "face_y_px": "centre y of the largest counted face, frame pixels; NaN without a face",
    "second_face_x_px": "centre x of the second-largest counted face, frame pixels; NaN with fewer than two",
    "second_face_y_px": "centre y of the second-largest counted face, frame pixels; NaN with fewer than two",
    "picture_face_x_px": "centre x of the largest face not counted as it sits in a picture frame, frame pixels; NaN "
    "without one",
    "picture_face_y_px": "centre y of that framed picture's face, frame pixels; NaN without one",
    "picture_face_size_px": "size of that framed picture's face; NaN without one",
    "face_too_small": "1 when the largest counted face is below too_small_px, else 0; NaN without a face",
    "small_face_checked": "1 when the full-range (small face) pass ran on this frame, else 0",
}


@dataclass(frozen=True)
class FacePresenceConfig:
    """Thresholds are settings because the right trade-off depends on the exam's policy."""

    min_score: float = 0.5
    """A short-range detection counts as a face at or above this score (after verification)."""
    full_range_min_score: float = 0.6
    """A full-range detection counts as a face at or above this score (MediaPipe's default)."""
    full_range_confirmed_score: float | None = 0.5
    """A full-range detection scoring from this up to ``full_range_min_score`` also counts where two other models
    are sure it is a person's face: the face mesh (``confirm_min_landmark_score``) and the face verifier (judged,
    and accepted; a face it cannot judge, grey or small or turned far, does not count). Such faces are merged apart
    from the sure ones, so they never move a sure face's box, and one overlapping a sure face is that face. None
    turns it off; so does a detector without the face mesh or the verifier (``human_faces=None``), as nothing
    could confirm them."""
    confirm_min_landmark_score: float = 0.5
    """The face mesh score that confirms such a face (the gaze path's own "landmarks usable")."""
    verify_below: float = 0.7
    """Short-range-only faces scoring below this need the face mesh to confirm them."""
    verify_min_landmark_score: float = 0.02
    """Face mesh score that confirms a doubtful face (hands scored < 0.01, faces 0.02-1)."""
    min_face_px: float = 16.0
    """Faces smaller than this (sqrt of box area, frame pixels) are not counted."""
    too_small_px: float = 60.0
    """The largest face below this size gets ``face_too_small = 1`` (candidate too far away)."""
    nms_iou: float = 0.3
    """Weighted-NMS overlap within one pass (MediaPipe's value)."""
    merge_overlap: float = 0.5
    """Detections of the two passes are one face when intersection / smaller area exceeds this."""
    full_range: bool = True
    """Run the full-range pass for small or far faces."""
    full_range_every_ms: int = 1000
    """Run it at most once per this many ms of video and carry its faces between (0 = every frame)."""
    tiled: bool = True
    """Also run the full-range model on overlapping tiles of the frame, for faces too small for the
    whole-frame passes (a person far behind the candidate: ~25-60 px in 640x480)."""
    tile_grid: int = 2
    """Tiles per side (2 = four tiles, each magnifying faces ~1.8x over the whole-frame pass)."""
    tile_overlap: float = 0.25
    """Each tile is this much larger than 1/grid of the frame, so a face on a border is whole in one tile."""
    tile_max_face_px: float = 64.0
    """Only faces smaller than this (frame pixels) are taken from tiles: larger ones are the whole-frame
    passes' job, and tiles cut them into pieces."""
    tile_every_ms: int = 3000
    """Run the tiled pass at most once per this many ms (it costs ~4 full-range passes) and carry its faces."""
    brighten_below_luma: float = 45.0
    """Frames darker than this (mean luma) are lifted with a gamma curve before detection (``imaging.brightened``)."""
    brighten_to_luma: float = 100.0
    plausibility: PlausibilityRule | None = field(default_factory=PlausibilityRule)
    """Doubtful faces (short-range only, below ``verify_below``) must also pass ``detectors.plausibility``:
    a cat's face is not a candidate. None turns it off."""
    picture_frames: PictureFrameRule | None = field(default_factory=PictureFrameRule)
    """A smaller face inside a closed rectangle (a poster, a photo on the wall: ``detectors.plausibility.framed``)
    is not counted. None turns it off."""
    human_faces: HumanFaceRule | None = field(default_factory=HumanFaceRule)
    """Counted faces must also convince MTCNN's face/non-face network (``detectors.face_verifier``): a dog's face
    is not a candidate. Judged on the frames the full-range pass runs on (less the faces a caller tracks and
    judges itself: ``FaceAnalysisDetector``); a face refused there stays refused until the next such frame.
    None turns it off."""

    def __post_init__(self) -> None:
        for name in (
            "min_score",
            "full_range_min_score",
            "verify_below",
            "verify_min_landmark_score",
            "confirm_min_landmark_score",
            "nms_iou",
            "merge_overlap",
        ):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"FacePresenceConfig.{name}: expected a value in (0, 1], found {value}")
        confirmed = self.full_range_confirmed_score
        if confirmed is not None and not 0.0 < confirmed < self.full_range_min_score:
            raise ValueError(
                "FacePresenceConfig.full_range_confirmed_score: expected a value in (0, full_range_min_score = "
                f"{self.full_range_min_score}), or None to turn the band off, found {confirmed}"
            )
        if self.min_face_px < 0 or self.too_small_px < 0:
            raise ValueError(
                f"FacePresenceConfig: expected non-negative sizes, found min_face_px={self.min_face_px}, "
                f"too_small_px={self.too_small_px}"
            )
        for name in ("full_range_every_ms", "tile_every_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"FacePresenceConfig.{name}: expected >= 0, found {getattr(self, name)}")
        if self.tile_grid < 2 or not 0.0 <= self.tile_overlap < 1.0:
            raise ValueError(
                f"FacePresenceConfig: expected tile_grid >= 2 and tile_overlap in [0, 1), found {self.tile_grid} "
                f"and {self.tile_overlap}"
            )


def _largest_first(faces: Faces) -> Faces:
    order = np.argsort(-faces.sizes, kind="stable")
    return Faces(faces.boxes[order], faces.scores[order], faces.keypoints[order])


def rate_mask(timestamps_ms: NDArray[np.int64], every_ms: int) -> NDArray[np.bool_]:
    """Frames on which a periodic pass runs: the first frame of each ``every_ms`` bucket of time.

    Buckets are aligned to absolute timestamps, so the choice does not depend on how the
    pipeline cut the session into chunks (except that each chunk's first frame always runs).
    """
    if every_ms <= 0 or timestamps_ms.size == 0:
        return np.ones(timestamps_ms.shape, dtype=bool)
    bucket = timestamps_ms // every_ms
    mask = np.ones(bucket.shape, dtype=bool)
    mask[1:] = bucket[1:] != bucket[:-1]
    return mask


def tile_boxes(width: int, height: int, grid: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """``grid`` x ``grid`` tiles (x, y, w, h) covering a frame, each ``1 + overlap`` times 1/grid of it.

    The first and last tiles of a row or column touch the frame's edges; the rest are spread evenly.
    """
    tw, th = min(width, round(width / grid * (1 + overlap))), min(height, round(height / grid * (1 + overlap)))
    xs = [round(c * (width - tw) / (grid - 1)) for c in range(grid)]
    ys = [round(r * (height - th) / (grid - 1)) for r in range(grid)]
    return [(x, y, tw, th) for y in ys for x in xs]


def distinct(faces: Faces, threshold: float) -> Faces:
    """The most confident of each group of overlapping faces (the same face seen in two tiles)."""
    keep: list[int] = []
    for i in np.argsort(-faces.scores, kind="stable"):
        if not keep or not overlaps(faces.boxes[i : i + 1], faces.boxes[keep], threshold)[0]:
            keep.append(int(i))
    mask = np.zeros(len(faces), dtype=bool)
    mask[keep] = True
    return faces.select(mask)


def overlaps(boxes: NDArray[np.float32], others: NDArray[np.float32], threshold: float) -> NDArray[np.bool_]:
    """For each of ``boxes``, whether it overlaps any of ``others`` (intersection over smaller area).

    Intersection over the smaller box, not IoU, because the two models box the same face
    differently (the full-range box is taller) and a face must not be counted twice.
    """
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros(len(boxes), dtype=bool)
    b, o = boxes[:, None, :], others[None, :, :]
    iw = np.clip(np.minimum(b[..., 2], o[..., 2]) - np.maximum(b[..., 0], o[..., 0]), 0, None)
    ih = np.clip(np.minimum(b[..., 3], o[..., 3]) - np.maximum(b[..., 1], o[..., 1]), 0, None)
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    area_o = (o[..., 2] - o[..., 0]) * (o[..., 3] - o[..., 1])
    ratio = iw * ih / np.maximum(np.minimum(area_b, area_o), 1e-9)
    return np.asarray((ratio > threshold).any(axis=1), dtype=bool)


class FacePresenceDetector:
    """Counts faces per frame; see the module docstring and ``COLUMNS``.

    ``short`` and ``mesh`` can be passed in so a detector that also needs them (``FaceAnalysisDetector``)
    loads each model once and runs the short-range pass once per frame.
    """

    name = "face_presence"
    # 4: plausibility; 5: second face placed; 6: dark frames lifted; 7: RGB-spread colour; 8: lift to 0.5; 9: framed
    # pictures not counted; 10: framed pictures placed (picture_face_*); 11: faces that are not a person's refused;
    # 12: the face verifier also scores smoothed crops (a dim room's grain); 13: full-range faces from 0.5 that the
    # face mesh and the verifier confirm; 14: those merged apart from the sure faces; 15: picture frames turned;
    # 16: frames also looked for in the edges as found (thickened, a frame touching another line merged with it)
    version = "16"

    def __init__(
        self,
        config: FacePresenceConfig | None = None,
        runtime: RuntimeConfig | None = None,
        *,
        short: BlazeFace | None = None,
        mesh: FaceMesh | None = None,
    ) -> None:
        self.config = config or FacePresenceConfig()
        runtime = runtime or RuntimeConfig()
        self.short = short or BlazeFace(SHORT_RANGE, runtime)
        self.full = BlazeFace(FULL_RANGE, runtime) if self.config.full_range or self.config.tiled else None
        self.mesh: FaceMesh | None = None
        if self.config.verify_below > self.config.min_score or self.config.tiled:
            self.mesh = mesh or FaceMesh(runtime)
        rule = self.config.human_faces
        self.verifier = FaceVerifier(rule, runtime) if rule is not None else None

    def lit(self, frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The frame as the detectors see it: lifted if it is very dark."""
        return brightened(frame, self.config.brighten_below_luma, self.config.brighten_to_luma)

    def lit_batch(self, batch: FrameBatch) -> FrameBatch:
        """The batch as the detectors see it (``lit`` on each frame); the same batch when none is dark."""
        frames = [self.lit(f) for f in batch.frames]
        if all(a is b for a, b in zip(frames, batch.frames, strict=True)):
            return batch
        return FrameBatch(np.stack(frames), batch.timestamps_ms)

    def detect_short(self, frame: NDArray[np.uint8]) -> Faces:
        """The short-range pass alone, at ``min_score``: what ``count`` takes as ``short``."""
        return self.short.detect([frame], self.config.min_score, self.config.nms_iou)[0]

    def detect_small(self, frame: NDArray[np.uint8]) -> Faces:
        """The tiled full-range pass: faces below ``tile_max_face_px``, one per face across tiles."""
        cfg = self.config
        if self.full is None or not cfg.tiled:
            return Faces.empty()
        h, w = frame.shape[:2]
        boxes = tile_boxes(w, h, cfg.tile_grid, cfg.tile_overlap)
        tiles = [frame[y : y + th, x : x + tw] for x, y, tw, th in boxes]
        per_tile = self.full.detect(tiles, cfg.full_range_min_score, cfg.nms_iou, [(x, y) for x, y, _, _ in boxes])
        faces = Faces.join(per_tile)
        small = faces.select((faces.sizes >= cfg.min_face_px) & (faces.sizes < cfg.tile_max_face_px))
        # Magnified tiles find knuckles and fingers as faces (scores 0.60-0.75 on the dev sessions, with face
        # mesh scores <= 0.013), while the small real faces measured score ~1.0 there: every tile face is checked.
        return self.mesh_confirmed(frame, distinct(small, cfg.merge_overlap))

    def mesh_confirmed(self, frame: NDArray[np.uint8], faces: Faces) -> Faces:
        """Those of ``faces`` whose face mesh score in ``frame`` reaches ``verify_min_landmark_score``."""
        return faces.select(self._mesh_confirms(frame, faces))

    def _mesh_confirms(self, frame: NDArray[np.uint8], faces: Faces) -> NDArray[np.bool_]:
        """Per face, whether the face mesh confirms it (all of them when no mesh is loaded)."""
        confirms: NDArray[np.bool_] = self._mesh_scores(frame, faces) >= self.config.verify_min_landmark_score
        return confirms

    def _mesh_scores(self, frame: NDArray[np.uint8], faces: Faces) -> NDArray[np.float64]:
        """Per face, the face mesh's score on it (1 for all of them when no mesh is loaded)."""
        if self.mesh is None:
            return np.ones(len(faces))
        rois = (roi_from_box(box, keypoints[:2]) for box, keypoints in zip(faces.boxes, faces.keypoints, strict=True))
        return np.array([self.mesh(frame, roi).score for roi in rois], dtype=np.float64)

    def detect_full(self, frame: NDArray[np.uint8]) -> Faces:
        """The full-range pass alone (empty when it is off): what ``count`` takes as ``full``. Faces below
        ``full_range_min_score`` count only where the face mesh and the face verifier confirm them
        (``full_range_confirmed_score``)."""
        if self.full is None or not self.config.full_range:
            return Faces.empty()
        cfg = self.config
        band = cfg.full_range_confirmed_score
        if band is None or self.mesh is None or self.verifier is None:
            full = self.full.detect([frame], cfg.full_range_min_score, cfg.nms_iou)[0]
            return full.select(full.sizes >= cfg.min_face_px)
        found = self.full.detect([frame], band, cfg.nms_iou, sure_score=cfg.full_range_min_score)[0]
        found = found.select(found.sizes >= cfg.min_face_px)
        is_sure = found.scores >= cfg.full_range_min_score
        sure, doubtful = found.select(is_sure), found.select(~is_sure)
        doubtful = doubtful.select(~overlaps(doubtful.boxes, sure.boxes, cfg.merge_overlap))
        if not len(doubtful):
            return sure
        confirmed = self._mesh_scores(frame, doubtful) >= cfg.confirm_min_landmark_score
        if np.any(confirmed):
            confirmed[confirmed] = self.verifier.human(frame, doubtful.select(confirmed))
        return Faces.join([sure, doubtful.select(confirmed)])

    def count(self, frame: NDArray[np.uint8], short: Faces, full: Faces, tracked: Faces | None = None) -> Faces:
        """The counted faces of one frame, largest first, from both passes run on it.

        Full-range boxes replace the short-range ones they overlap; short-range-only faces below
        ``verify_below`` must be confirmed by the face mesh. ``tracked``: faces the caller's face mesh
        already found on this frame (confirmed, never checked again; short-range faces they overlap are
        the same faces).
        """
        short, tracked = self._split(short, tracked)
        extra = short.select(~overlaps(short.boxes, full.boxes, self.config.merge_overlap))
        extra_tracked = tracked.select(~overlaps(tracked.boxes, full.boxes, self.config.merge_overlap))
        return _largest_first(Faces.join([full, self._verified(frame, extra), extra_tracked]))

    def count_carried(
        self, frame: NDArray[np.uint8], short: Faces, seen: Faces, far: Faces, tracked: Faces | None = None
    ) -> Faces:
        """The counted faces of a frame the full-range pass skipped, from the last frame it ran on.

        ``seen``: all faces of that last full-range pass; ``far``: those of them that the short-range pass
        did not find there (small or far faces). The frame's own short-range faces keep their boxes (a
        carried box may have moved); one that a ``seen`` face overlaps needs no mesh check; a ``far`` face
        that no short-range face overlaps is counted as last seen. Faces both passes found are not carried:
        the short-range pass looks for them on every frame, so a candidate who leaves is not counted on.
        ``tracked`` as in ``count``.
        """
        cfg = self.config
        short, tracked = self._split(short, tracked)
        confirmed = overlaps(short.boxes, seen.boxes, cfg.merge_overlap)
        kept = Faces.join([tracked, short.select(confirmed), self._verified(frame, short.select(~confirmed))])
        found = Faces.join([tracked, short])
        carried = far.select(~overlaps(far.boxes, found.boxes, cfg.merge_overlap))
        return _largest_first(Faces.join([kept, carried]))

    def _eligible(self, short: Faces) -> Faces:
        cfg = self.config
        return short.select((short.scores >= cfg.min_score) & (short.sizes >= cfg.min_face_px))

    def _split(self, short: Faces, tracked: Faces | None) -> tuple[Faces, Faces]:
        """The eligible short-range faces that no tracked face overlaps, and the eligible tracked faces."""
        tracked = self._eligible(tracked if tracked is not None else Faces.empty())
        short = self._eligible(short)
        return short.select(~overlaps(short.boxes, tracked.boxes, self.config.merge_overlap)), tracked

    def _verified(self, frame: NDArray[np.uint8], extra: Faces) -> Faces:
        """Short-range-only faces, less those below ``verify_below`` that the face mesh does not confirm or
        that fail the plausibility check (with no full-range score: the full-range pass did not find them)."""
        keep = extra.scores >= self.config.verify_below
        doubtful = extra.select(~keep)
        mesh = self._mesh_scores(frame, doubtful)
        ok = mesh >= self.config.verify_min_landmark_score
        if self.config.plausibility is not None and len(doubtful):
            ok &= plausible(frame, doubtful, mesh, np.zeros(len(doubtful)), self.config.plausibility)
        keep[~keep] = ok
        return extra.select(keep)

    def with_small(self, counted: Faces, small: Faces) -> Faces:
        """``counted`` plus the tiled pass's small faces that none of them overlaps, largest first."""
        if not len(small):
            return counted
        extra = small.select(~overlaps(small.boxes, counted.boxes, self.config.merge_overlap))
        return _largest_first(Faces.join([counted, extra])) if len(extra) else counted

    def not_human(self, frame: NDArray[np.uint8], faces: Faces) -> NDArray[np.bool_]:
        """Per face: True where ``FacePresenceConfig.human_faces`` judges it and it is not a person's face."""
        if self.verifier is None:
            return np.zeros(len(faces), dtype=bool)
        return self.verifier.not_human(frame, faces)

    def split_pictures(self, frame: NDArray[np.uint8], counted: Faces) -> tuple[Faces, Faces]:
        """``counted`` less the faces in a picture frame (``FacePresenceConfig.picture_frames``), and those faces."""
        rule = self.config.picture_frames
        if rule is None or len(counted) < 2:
            return counted, Faces.empty()
        framed = pictures(frame, counted, rule)
        return counted.select(~framed), counted.select(framed)

    def faces(self, frame: NDArray[np.uint8]) -> Faces:
        """The counted faces of one still frame (all passes), largest first, with their detection scores."""
        frame = self.lit(frame)
        counted = self.count(frame, self.detect_short(frame), self.detect_full(frame))
        counted = self.with_small(counted, self.detect_small(frame))
        return self.split_pictures(frame, counted.select(~self.not_human(frame, counted)))[0]

    def detect(
        self,
        batch: FrameBatch,
        short: Sequence[Faces] | None = None,
        tracked: Sequence[Faces] | None = None,
        full: dict[int, Faces] | None = None,
    ) -> list[Faces]:
        """Per-frame counted faces (boxes, scores, keypoints in frame pixels), largest first; the arguments as in
        ``detect_with_pictures``."""
        return [counted for counted, _ in self.detect_with_pictures(batch, short, tracked, full)]

    def detect_with_pictures(
        self,
        batch: FrameBatch,
        short: Sequence[Faces] | None = None,
        tracked: Sequence[Faces] | None = None,
        full: dict[int, Faces] | None = None,
    ) -> list[tuple[Faces, Faces]]:
        """Per frame: the counted faces, largest first, and the faces not counted as framed pictures.

        ``short``: the batch's short-range detections at ``min_score``, when the caller already ran them.
        ``tracked``: per frame, faces the caller's face mesh found there (see ``count``).
        ``full``: the full-range pass (``detect_full``) of frames the caller already ran it on, by frame index.
        The full-range result is carried to the frames ``full_range_every_ms`` skips, within this batch.
        """
        for name, given in (("short", short), ("tracked", tracked)):
            if given is not None and len(given) != len(batch):
                raise ValueError(f"{name}: expected one detection per frame ({len(batch)}), found {len(given)}")
        due = rate_mask(batch.timestamps_ms, self.config.full_range_every_ms)
        tile_due = rate_mask(batch.timestamps_ms, self.config.tile_every_ms)
        out: list[tuple[Faces, Faces]] = []
        seen = far = small = refused = Faces.empty()
        for i, frame in enumerate(batch.frames):
            found = short[i] if short is not None else self.detect_short(frame)
            mine = tracked[i] if tracked is not None else Faces.empty()
            # A carried small face must still be there: after a cut (or when the person leaves) its place holds
            # something else, which the face mesh does not confirm. One mesh run per carried face, rarely any.
            small = self.detect_small(frame) if tile_due[i] else self.mesh_confirmed(frame, small)
            if due[i]:
                seen = full[i] if full is not None and i in full else self.detect_full(frame)
                present = Faces.join([self._eligible(found), self._eligible(mine)])
                far = seen.select(~overlaps(seen.boxes, present.boxes, self.config.merge_overlap))
                counted = self.with_small(self.count(frame, found, seen, mine), small)
                # The caller judged its tracked faces where their tracks started and at each re-detection.
                untracked = counted.select(~overlaps(counted.boxes, mine.boxes, self.config.merge_overlap))
                refused = untracked.select(self.not_human(frame, untracked))
            else:
                counted = self.with_small(self.count_carried(frame, found, seen, far, mine), small)
            if len(refused):  # a face refused on the last full-range frame, where it still is (not a tracked one)
                merge = self.config.merge_overlap
                gone = overlaps(counted.boxes, refused.boxes, merge) & ~overlaps(counted.boxes, mine.boxes, merge)
                counted = counted.select(~gone)
            out.append(self.split_pictures(frame, counted))
        return out

    def signals(
        self,
        batch: FrameBatch,
        short: Sequence[Faces] | None = None,
        tracked: Sequence[Faces] | None = None,
        full: dict[int, Faces] | None = None,
    ) -> Signals:
        """The ``COLUMNS`` of a batch; ``short``, ``tracked`` and ``full`` as in ``detect``."""
        n = len(batch)
        cols = {name: np.full(n, np.nan) for name in COLUMNS}
        ran = rate_mask(batch.timestamps_ms, self.config.full_range_every_ms)
        cols["small_face_checked"] = ran.astype(np.float64) if self.full is not None else np.zeros(n)
        for i, (counted, framed) in enumerate(self.detect_with_pictures(batch, short, tracked, full)):
            cols["face_count"][i] = len(counted)
            if len(framed):
                picture = framed.boxes[int(np.argmax(framed.sizes))]
                cols["picture_face_size_px"][i] = float(framed.sizes.max())
                cols["picture_face_x_px"][i] = float(picture[0] + picture[2]) / 2
                cols["picture_face_y_px"][i] = float(picture[1] + picture[3]) / 2
            cols["face_score_max"][i] = float(counted.scores.max()) if len(counted) else 0.0
            if len(counted):
                size = float(counted.sizes[0])
                box = counted.boxes[0]
                cols["face_size_px"][i] = size
                cols["face_cx"][i] = float(box[0] + box[2]) / 2 / batch.width
                cols["face_cy"][i] = float(box[1] + box[3]) / 2 / batch.height
                cols["face_x_px"][i] = float(box[0] + box[2]) / 2
                cols["face_y_px"][i] = float(box[1] + box[3]) / 2
                cols["face_too_small"][i] = float(size < self.config.too_small_px)
            if len(counted) > 1:
                second = counted.boxes[1]
                cols["second_face_size_px"][i] = float(counted.sizes[1])
                cols["second_face_x_px"][i] = float(second[0] + second[2]) / 2
                cols["second_face_y_px"][i] = float(second[1] + second[3]) / 2
        return Signals(batch.timestamps_ms, cols)

    def __call__(self, batch: FrameBatch) -> Signals:
        return self.signals(self.lit_batch(batch))
