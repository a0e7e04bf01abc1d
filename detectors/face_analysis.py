"""Face presence and gaze in one pass: track the main face with the face mesh, detect faces once a second.

Run side by side, ``face_presence`` and ``gaze`` each run the short-range BlazeFace on every frame and
each load their own face mesh. This detector loads the short-range model and the mesh once and follows
MediaPipe's face mesh graph: the gaze path tracks the main face from frame to frame with the mesh (the
previous frame's landmarks place the next crop) and detects only where the track is lost or at most once
per ``GazeConfig.redetect_every_ms`` (1 s). Face presence counts from the same detections: on the frames
between, the count is the tracked face, moved to where the mesh found it, plus the other faces of the
last detection. So a second person who comes or goes is counted up to a second late, while a candidate
who leaves loses the track, which runs the detection at once. Its columns are exactly those of the two
detectors, with the same meanings (``SIGNAL_COLUMNS``).

The detection runs at the lower of the two score thresholds with face presence's NMS overlap; each side
then applies its own threshold. Without tracking (``GazeConfig(track=False)``, and the default
thresholds, 0.5 and 0.5, IoU 0.3) the signals are those of the two detectors run separately.

With an ``IdentityConfig`` (the default) it also embeds the tracked face with dlib's face descriptor on a
few frames: near-frontal, large and sure faces, at most once per ``IdentityConfig.every_ms`` and whenever
the track starts. The 128 numbers go into columns ``face_descriptor_000`` .. ``_127`` (NaN on the frames
not embedded); they are biometric data, kept apart from the other signals when stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .blazeface import SHORT_RANGE, BlazeFace, Faces
from .face_presence import COLUMNS as PRESENCE_COLUMNS
from .face_presence import FacePresenceConfig, FacePresenceDetector, overlaps, rate_mask
from .gaze import COLUMNS as GAZE_COLUMNS
from .gaze import GazeConfig, GazeDetector, MainFace
from .identity import DESCRIPTOR_SIZE, FaceEmbedder, IdentityConfig, chip_chroma, chip_sharpness
from .imaging import brightened
from .mesh import ROI_SCALE, FaceMesh, Roi
from .plausibility import plausible
from .runtime import RuntimeConfig
from .seams import FrameBatch, Signals

__all__ = ["COLUMNS", "DESCRIPTOR_COLUMNS", "FaceAnalysisDetector", "TrackedFace", "embedding_due", "main_detection"]

DESCRIPTOR_COLUMNS = tuple(f"face_descriptor_{k:03d}" for k in range(DESCRIPTOR_SIZE))
COLUMNS = {
    **PRESENCE_COLUMNS,
    **GAZE_COLUMNS,
    **{
        c: "dlib face descriptor of the tracked face, one of 128 numbers; NaN where not embedded"
        for c in DESCRIPTOR_COLUMNS
    },
}


def main_detection(found: Faces, roi: Roi, overlap: float) -> int | None:
    """Index of the most confident of ``found`` that is the face whose landmarks span ``roi``, if any.

    The ROI is 1.5x the face (``ROI_SCALE``), so the face's box is taken as the ROI's centre square of
    a 1.5th of its side; a detection is that face when they overlap as ``overlaps`` judges it.
    """
    (cx, cy), side, _ = roi
    half = side / ROI_SCALE / 2
    box = np.array([[cx - half, cy - half, cx + half, cy + half]], np.float32)
    same = overlaps(found.boxes, box, overlap)
    if not np.any(same):
        return None
    return int(np.argmax(np.where(same, found.scores, -1.0)))


@dataclass(frozen=True)
class TrackedFace:
    """The main face as last detected (one row), the other faces of that pass, and its landmark ROI then."""

    face: Faces
    others: Faces
    roi: Roi

    def moved_to(self, roi: Roi) -> Faces:
        """The detected face's box and keypoints moved and scaled as its landmark ROI moved to ``roi``."""
        (cx, cy), side, _ = self.roi
        (nx, ny), new_side, _ = roi
        scale = new_side / max(side, 1e-9)

        def move(points: NDArray[np.float32]) -> NDArray[np.float32]:
            return ((points - (cx, cy)) * scale + (nx, ny)).astype(np.float32)

        boxes = move(self.face.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return Faces(boxes, self.face.scores, move(self.face.keypoints))


def embedding_due(
    timestamps_ms: NDArray[np.int64],
    mains: list[MainFace],
    signals: Signals,
    config: IdentityConfig,
    clear: Callable[[int], bool],
) -> list[int]:
    """Frames whose tracked face is embedded: near-frontal, large and sure faces where the track starts, and
    the first such frame of every ``every_ms`` bucket of time (buckets aligned to absolute time). A face whose chip
    ``clear`` refuses (no colour or no detail) spends neither: the next near-frontal, large and sure face is taken.
    One soft frame (a blink of motion blur, a 320x240 camera) used to leave its 5 s without a sample."""
    due: list[int] = []
    last_bucket: int | None = None
    start_owed = False
    yaw, pitch, score, roi = (
        signals[c] for c in ("head_yaw_deg", "head_pitch_deg", "landmark_score", "gaze_face_size_px")
    )
    for i, main in enumerate(mains):
        if main.points is None:
            start_owed = False
            continue
        usable = (
            abs(yaw[i]) <= config.max_abs_yaw_deg
            and abs(pitch[i]) <= config.max_abs_pitch_deg
            and score[i] >= config.min_landmark_score
            and roi[i] / ROI_SCALE >= config.min_face_px
        )
        if not usable:
            continue
        bucket = int(timestamps_ms[i]) // config.every_ms if config.every_ms > 0 else i
        starts = i == 0 or mains[i - 1].points is None or start_owed
        if starts or bucket != last_bucket:
            if clear(i):
                due.append(i)
                last_bucket, start_owed = bucket, False
            else:
                start_owed = starts
    return due


class FaceAnalysisDetector:
    """``face_presence`` and ``gaze`` columns from one face mesh track and the detections it needs, and the
    tracked face's descriptor on a few frames."""

    name = "face_analysis"
    # 9: a track also starts on a face only the full-range pass finds; 10: a chip refused for colour or detail
    # leaves its bucket (or track start) to the next face; 11: a chip too dark to show its colour is lifted first
    version = f"11+face_presence{FacePresenceDetector.version}+gaze{GazeDetector.version}"

    def __init__(
        self,
        presence: FacePresenceConfig | None = None,
        gaze: GazeConfig | None = None,
        runtime: RuntimeConfig | None = None,
        identity: IdentityConfig | None = IdentityConfig(),
    ) -> None:
        runtime = runtime or RuntimeConfig()
        short = BlazeFace(SHORT_RANGE, runtime)
        mesh = FaceMesh(runtime)
        self.presence = FacePresenceDetector(presence, runtime, short=short, mesh=mesh)
        self.gaze = GazeDetector(gaze, runtime, detector=short, mesh=mesh)
        self.embedder = FaceEmbedder(identity, runtime) if identity is not None else None
        self._short = short
        self._min_score = min(self.presence.config.min_score, self.gaze.config.min_face_score)

    def __call__(self, batch: FrameBatch) -> Signals:
        batch = self.presence.lit_batch(batch)  # very dark frames lifted, for every model alike
        cfg = self.presence.config
        detections: list[Faces | None] = [None] * len(batch)

        def detect(i: int) -> Faces:
            found = detections[i]
            if found is None:
                found = detections[i] = self._short.detect([batch.frames[i]], self._min_score, cfg.nms_iou)[0]
            return found

        full: dict[int, Faces] = {}  # full-range passes already run, by frame
        full_due = rate_mask(batch.timestamps_ms, cfg.full_range_every_ms)

        def detect_far(i: int) -> Faces:
            """Where face presence runs its full-range pass: the faces it finds that the face verifier does
            not refuse (the pass already confirmed its doubtful ones), for a track on a face too small for the
            short-range model. Face presence reuses the pass, so this costs no detection of its own."""
            if not full_due[i]:
                return Faces.empty()
            if i not in full:
                full[i] = self.presence.detect_full(batch.frames[i])
            return full[i].select(~self.presence.not_human(batch.frames[i], full[i]))

        gaze, mains = self.gaze.run(batch, detect, detect_far)
        short: list[Faces] = []
        tracked: list[Faces] = []
        last: TrackedFace | None = None
        not_a_person = np.zeros(len(batch), dtype=bool)  # frames whose tracked face failed the plausibility check
        refuted = False  # the current track's face failed it where the track started
        for i, main in enumerate(mains):
            roi = main.landmarks
            if main.detection is not None:
                refuted = not self._plausible_main(batch.frames[i], detect(i), main, full, i)
            elif roi is None or main.far is not None:
                refuted = False
            if refuted and (roi is not None or main.detection is not None):
                not_a_person[i] = True
                found = detect(i)
                j = main.detection if main.detection is not None else main_detection(found, roi, cfg.merge_overlap)  # type: ignore[arg-type]
                others = found.select(np.arange(len(found)) != j) if j is not None else found
                tracked.append(Faces.empty())
                short.append(others)
                last = None
                continue
            if detections[i] is None and roi is not None and last is not None:
                tracked.append(last.moved_to(roi))
                short.append(last.others)
                continue
            confirmed, rest = self._split(detect(i), main)
            last = TrackedFace(confirmed, rest, roi) if len(confirmed) and roi is not None else None
            tracked.append(confirmed)
            short.append(rest)
        if np.any(not_a_person):
            # An animal's or a cartoon's "head pose" is no evidence of where a candidate looks.
            gaze = Signals(gaze.timestamps_ms, {c: np.where(not_a_person, np.nan, v) for c, v in gaze.columns.items()})
            mains = [MainFace() if bad else m for m, bad in zip(mains, not_a_person, strict=True)]
        parts = [self.presence.signals(batch, short, tracked, full), gaze]
        if self.embedder is not None:
            parts.append(self._descriptors(batch, mains, gaze))
        return Signals.merge(parts)

    def _descriptors(self, batch: FrameBatch, mains: list[MainFace], gaze: Signals) -> Signals:
        assert self.embedder is not None
        config = self.embedder.config
        values = np.full((len(batch), DESCRIPTOR_SIZE), np.nan)
        chips: dict[int, NDArray[np.uint8]] = {}
        lift = self.presence.config

        def clear(i: int) -> bool:
            """Colourless or blurred faces are not compared: there a descriptor does not tell people apart. A face
            too dark to show its colour (dark skin in a dim or backlit room) is first lifted, as a dark frame is:
            a grey face stays grey, a colour one shows its colour."""
            chip = self.embedder.chip(batch.frames[i], mains[i].points)  # type: ignore[union-attr, arg-type]
            if chip_chroma(chip) < config.min_chroma:
                chip = brightened(chip, lift.brighten_below_luma, lift.brighten_to_luma)
            chips[i] = chip
            return bool(chip_chroma(chip) >= config.min_chroma and chip_sharpness(chip) >= config.min_sharpness)

        due = embedding_due(batch.timestamps_ms, mains, gaze, config, clear)
        if due:
            values[due] = self.embedder.embed(np.stack([chips[i] for i in due]))
        return Signals(batch.timestamps_ms, {c: values[:, k] for k, c in enumerate(DESCRIPTOR_COLUMNS)})

    def _plausible_main(
        self, frame: NDArray[np.uint8], found: Faces, main: MainFace, full_range: dict[int, Faces], i: int
    ) -> bool:
        """Whether the face the track starts on is a person's: it must convince the face verifier
        (``FacePresenceDetector.not_human``) and pass ``detectors.plausibility`` (sure faces always do: only a
        short-range score below ``tracked_face_below`` is doubtful; its full-range score is looked up then)."""
        rule = self.presence.config.plausibility
        j = main.detection
        if j is None:
            return True
        face = found.select(np.arange(len(found)) == j)
        if self.presence.not_human(frame, face)[0]:
            return False
        if rule is None or found.scores[j] >= rule.tracked_face_below:
            return True
        if i not in full_range:  # run once: presence reuses it if its own full-range pass is due on this frame
            full_range[i] = self.presence.detect_full(frame)
        full = full_range[i]
        hit = overlaps(full.boxes, face.boxes, self.presence.config.merge_overlap)
        full_score = float(full.scores[hit].max()) if np.any(hit) else 0.0
        ok = plausible(frame, face, np.array([main.mesh_score]), np.array([full_score]), rule)
        return bool(ok[0])

    def _split(self, found: Faces, main: MainFace) -> tuple[Faces, Faces]:
        """A frame's detections as (the main face, confirmed by the gaze path's face mesh; the rest)."""
        cfg = self.presence.config
        if main.far is not None and main.landmarks is not None:
            # The short-range pass found no main face here and the track starts on this one. One the mesh did not
            # read falls through to no main face: face presence counts it from its own pass and carries it on.
            return main.far, found
        j = main.detection
        if j is None and main.landmarks is not None:
            j = main_detection(found, main.landmarks, cfg.merge_overlap)
        if j is None:
            return Faces.empty(), found
        is_main = np.arange(len(found)) == j
        if main.detection is not None and main.mesh_score < cfg.verify_min_landmark_score:
            # The mesh refuted it, which is the very check presence makes of a doubtful face (one below
            # ``verify_below``): such a face is not counted, a sure one is left for presence to count.
            return Faces.empty(), found.select(~is_main) if found.scores[j] < cfg.verify_below else found
        return found.select(is_main), found.select(~is_main)
