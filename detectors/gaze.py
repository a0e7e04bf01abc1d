"""Gaze and head pose: face mesh (+ iris) -> head yaw/pitch/roll and eye-in-head gaze per frame.

The path follows MediaPipe's face mesh graph: a BlazeFace detection gives a rotated square ROI, the
192x192 crop goes through the landmark model, and the mesh's 3D geometry gives the head pose (see
``geometry``). From then on the previous frame's landmarks place the next crop (``track``), and
BlazeFace runs again only where the track is lost, or once per ``redetect_every_ms``. A caller that runs the
full-range model may offer its faces too, for faces too small for the short-range one (``run``). Where the mesh
is unusable (near profile, tilted far up) but BlazeFace found the face, its keypoints give a
coarse yaw and pitch instead.

Iris runs on both eyes (one 64x64 crop each, batched) at most once per ``iris_every_ms``: it
doubles the cost of a frame, and eye movements that matter for an exam last seconds. Frames
without an iris measurement get NaN eye gaze; the calibration holds the last measurement.

Every column is NaN when no usable face was found: unknown, not "looking away".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from models import resolve_model

from .blazeface import SHORT_RANGE, BlazeFace, Faces
from .face_presence import rate_mask
from .geometry import (
    EYE_CORNERS,
    eye_gaze,
    eye_openness,
    head_pose,
    map_points,
    pitch_from_keypoints,
    rect_from_points,
    yaw_from_keypoints,
)
from .mesh import ROI_SCALE, FaceMesh, MeshResult, Roi, roi_from_box, warp_crop
from .runtime import RuntimeConfig, create_session
from .seams import FrameBatch, Signals

__all__ = ["COLUMNS", "GazeConfig", "GazeDetector", "MainFace", "Track", "landmarks_roi", "track_jumped"]

log = logging.getLogger(__name__)

COLUMNS = {
    "landmark_score": "face mesh confidence of the tracked face (0..1); NaN when no face was found",
    "head_yaw_deg": "head yaw, degrees, > 0 when the nose points toward image right",
    "head_pitch_deg": "head pitch, degrees, > 0 when the nose points up",
    "head_roll_deg": "head roll, degrees, > 0 when the head tilts clockwise in the image",
    "eye_gaze_h": "iris offset from the eye centre along the eye, in eye widths, > 0 toward image right",
    "eye_gaze_v": "iris offset across the eye, in eye widths, > 0 up",
    "eye_openness": "lid gap over eye width, both eyes averaged (open ~0.3, closed < 0.1)",
    "eye_detail": "Laplacian variance over intensity variance of the 64x64 eye crops (both eyes); "
    "NaN where iris did not run. Below min_eye_detail the eye gaze is NaN",
    "gaze_face_size_px": "side of the landmark ROI in frame pixels (about 1.5x the face)",
    "gaze_face_x_px": "centre x of the landmark ROI in frame pixels (where the tracked face sits)",
    "gaze_face_y_px": "centre y of the landmark ROI in frame pixels",
    "head_yaw_coarse_deg": "yaw from BlazeFace keypoints, only where a face was detected but the mesh "
    "was unusable (near profile); same sign as head_yaw_deg, NaN elsewhere",
    "head_pitch_coarse_deg": "pitch from BlazeFace keypoints, on the same frames as head_yaw_coarse_deg",
}

IRIS_SIZE = 64
DETECTION_NMS_IOU = 0.3
"""Weighted-NMS overlap of the gaze detector's own BlazeFace pass (MediaPipe's value)."""
IRIS_ROI_SCALE = 2.3


@dataclass(frozen=True)
class GazeConfig:
    """Settings for the gaze path; defaults follow MediaPipe's face mesh graph where it has one."""

    min_face_score: float = 0.5
    """BlazeFace score needed to start a track."""
    min_landmark_score: float = 0.5
    """Face mesh confidence below which landmarks are unusable (the frame's columns become NaN)."""
    min_face_px: float = 24.0
    """Faces smaller than this are not worth a mesh: landmarks on them are noise."""
    iris: bool = True
    """Measure eye-in-head gaze with the iris model."""
    iris_every_ms: int = 400
    """Run iris at most once per this many ms of video (0 = every frame). At the pipeline's 5 fps that is
    every other frame; the calibration holds each measurement for ``AwayConfig.hold_gaze_ms`` (400 ms),
    so every frame with a face still has an eye gaze at most 400 ms old."""
    track: bool = True
    """Follow the main face from frame to frame with the face mesh, as MediaPipe's face mesh graph does: the
    previous frame's landmarks place the next crop, and BlazeFace runs only where the track is lost (no
    usable mesh, or a jump: ``track_jumped``) or ``redetect_every_ms`` is due. Saves the detection on most
    frames (~1.3 ms each on one core)."""
    redetect_every_ms: int = 1000
    """While tracking, still detect at most once per this many ms and restart the track from the detection
    (0 = detect on every frame). After a splice cut to another face at about the same place, the track
    held and framed the new face badly for ~1.5 s on the dev sessions (pitch 10-15 degrees off), which
    raised false looking-away alarms; the restart bounds that to this long. ``FaceAnalysisDetector`` also
    counts faces other than the tracked one from these detections."""
    min_eye_detail: float = 0.015
    """Eye crops with less detail than this give no eye gaze (unknown). Measured on the dev set:
    webcam video 0.03-0.06 (also darkened to gamma 0.4), blurry upscaled stills 0.004-0.006,
    where the iris model returned noise that raised false looking-away alarms."""

    def __post_init__(self) -> None:
        for name in ("min_face_score", "min_landmark_score"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"GazeConfig.{name}: expected a value in (0, 1), found {value}")
        if self.min_face_px < 0:
            raise ValueError(f"GazeConfig.min_face_px: expected >= 0, found {self.min_face_px}")
        if self.min_eye_detail < 0:
            raise ValueError(f"GazeConfig.min_eye_detail: expected >= 0, found {self.min_eye_detail}")
        for name in ("iris_every_ms", "redetect_every_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"GazeConfig.{name}: expected >= 0, found {getattr(self, name)}")


TRACK_MAX_SHIFT = 0.15
TRACK_MAX_SCALE = 1.2
REFRAME_MAX_DEG = 3.0
"""Where a track starts, the landmarks' eye line may differ from the crop's rotation by this much before the mesh
runs again on a crop turned to it (``GazeDetector.started``)."""
REFRAME_PASSES = 2


def landmarks_roi(landmarks: NDArray[np.float64]) -> Roi:
    """The ROI a face mesh's landmarks span (MediaPipe's rule: 1.5x their extent, level with the eye corners)."""
    return rect_from_points(landmarks[:, :2], 33, 263, ROI_SCALE)


def track_jumped(previous: Roi, current: Roi) -> bool:
    """Whether the mesh found on a tracked crop (its landmarks spanning ``current``) sits far from where the
    landmarks were on the previous frame (``previous``); then re-detect.

    Landmarks from a crop that no longer frames the face (a hard cut, a fast move at a low frame
    rate) still score high and drift toward the face over several frames, giving a second of
    nonsense pose. A real head moves little between frames, so a shift of more than 15% of the
    ROI or a 1.2x size change means the track is stale.
    """
    (cx, cy), size, _ = previous
    (nx, ny), new_size, _ = current
    shift = float(np.hypot(nx - cx, ny - cy)) / max(size, 1e-9)
    ratio = new_size / max(size, 1e-9)
    return shift > TRACK_MAX_SHIFT or not 1 / TRACK_MAX_SCALE <= ratio <= TRACK_MAX_SCALE


@dataclass(frozen=True)
class Track:
    """The main face as last detected: the mesh ROI its detection box gave, and the ROI its landmarks spanned.

    Following the face, the next frame's mesh ROI is placed the way a detection would place it, moved and
    scaled as the landmarks moved (``follow``): the landmarks' own box is larger than the detection's (it
    spans forehead to chin) and a crop in that framing gave the face mesh worse poses on the dev sessions.
    """

    detected: Roi
    landmarks: Roi

    def follow(self, landmarks: Roi) -> Roi:
        """The detection-style mesh ROI for a face whose landmarks now span ``landmarks``."""
        (dx, dy), detected_side, _ = self.detected
        (lx, ly), landmarks_side, _ = self.landmarks
        (nx, ny), side, angle = landmarks
        scale = side / max(landmarks_side, 1e-9)
        return (nx + (dx - lx) * scale, ny + (dy - ly) * scale), detected_side * scale, angle


@dataclass(frozen=True)
class MainFace:
    """What the gaze path found of its main face on one frame."""

    landmarks: Roi | None = None
    """The ROI its landmarks span, where the face mesh was usable."""
    detection: int | None = None
    """Its index among the frame's short-range detections, where the mesh ran on one on this frame."""
    far: Faces | None = None
    """The far pass's detection (one face) the mesh ran on this frame, where the short-range pass found no main
    face (``GazeDetector.run``'s ``detect_far``)."""
    mesh_score: float = float("nan")
    """The face mesh score on that detection (NaN where the mesh ran on the track, or not at all)."""
    points: NDArray[np.float64] | None = None
    """Its (468, 3) mesh landmarks in frame pixels, where the mesh was usable."""


class GazeDetector:
    """Head pose and eye gaze of the main (most confident) face; see ``COLUMNS``.

    ``detector`` and ``mesh`` can be passed in so models shared with face presence load once.
    """

    name = "gaze"
    # 5: a track's first crop turned to its landmarks (started); 4: gaze_face_size_px from the landmarks, not the
    # crop; 3: gaze_face_x_px, gaze_face_y_px
    version = "5"

    def __init__(
        self,
        config: GazeConfig | None = None,
        runtime: RuntimeConfig | None = None,
        *,
        detector: BlazeFace | None = None,
        mesh: FaceMesh | None = None,
    ) -> None:
        self.config = config or GazeConfig()
        runtime = runtime or RuntimeConfig()
        if detector is not None and detector.spec != SHORT_RANGE:
            raise ValueError(f"GazeDetector: expected a {SHORT_RANGE.model} detector, found {detector.spec.model}")
        self.detector = detector or BlazeFace(SHORT_RANGE, runtime)
        self.mesh = mesh or FaceMesh(runtime)
        self.iris: ort.InferenceSession | None = None
        if self.config.iris:
            self.iris = create_session(resolve_model("iris_landmark").path, runtime, model_name="iris_landmark")

    # -- stages ---------------------------------------------------------------------------------

    def main_face(self, faces: Faces) -> int | None:
        """Index of the most confident face that passes the score and size thresholds.

        Most confident, not largest: on blurry upscaled stills a large spurious box can pass the
        threshold, while the candidate's face is almost always the surest detection.
        """
        ok = (faces.scores >= self.config.min_face_score) & (faces.sizes >= self.config.min_face_px)
        if not np.any(ok):
            return None
        return int(np.argmax(np.where(ok, faces.scores, -1.0)))

    def started(self, frame: NDArray[np.uint8], detected: Roi) -> tuple[MeshResult, Roi]:
        """The face mesh on a detection's ROI, run again (at most ``REFRAME_PASSES`` times) on the crop turned to
        the landmarks' own eye line while the two differ by more than ``REFRAME_MAX_DEG``; and the ROI it ran on.

        The mesh leans toward the rotation of the crop it is given. A detection's crop is turned as BlazeFace's
        two eye keypoints lie, and on a face of 80-90 px they can lie 30 degrees off the eye line: there the mesh
        read the roll 20 degrees, the yaw 11 and the eye gaze 0.35 eye widths off the tracked frames around it
        (dev17 with the camera far back), once a second, at every re-detection. A tracked frame's crop is turned
        by the previous frame's landmarks, so it does not lean; neither does a started one turned as its own
        landmarks lie. A pass whose mesh is unusable is not taken.
        """
        mesh = self.mesh(frame, detected)
        for _ in range(REFRAME_PASSES):
            if mesh.score < self.config.min_landmark_score:
                break
            angle = landmarks_roi(mesh.landmarks)[2]
            if abs(math.remainder(angle - detected[2], math.tau)) <= math.radians(REFRAME_MAX_DEG):
                break
            turned = (detected[0], detected[1], angle)
            again = self.mesh(frame, turned)
            if again.score < self.config.min_landmark_score:
                break
            mesh, detected = again, turned
        return mesh, detected

    def roi_from_detection(self, faces: Faces) -> Roi | None:
        """The main face as a mesh ROI."""
        i = self.main_face(faces)
        return None if i is None else roi_from_box(faces.boxes[i], faces.keypoints[i, :2])

    def run_iris(
        self, frame: NDArray[np.uint8], lm: NDArray[np.float64], min_detail: float = 0.0
    ) -> tuple[NDArray[np.float64] | None, float]:
        """Iris centres (2, 2) in frame pixels (image-left eye first) and the eye crops' detail.

        Detail is the Laplacian variance over the intensity variance of the grey crops: it does
        not change when the light dims, but collapses when the eyes are blurred or upscaled. Below
        ``min_detail`` the iris model would return noise, so it is not run (centres None).
        """
        assert self.iris is not None
        crops = np.empty((2, IRIS_SIZE, IRIS_SIZE, 3), np.float32)
        affines = []
        details = []
        for k, (a, b) in enumerate(EYE_CORNERS):
            crop, affine = warp_crop(frame, rect_from_points(lm[[a, b], :2], 0, 1, IRIS_ROI_SCALE), IRIS_SIZE)
            # The model was trained on one eye; MediaPipe mirrors the image-right eye to match.
            crops[k] = (crop[:, ::-1] if k == 1 else crop).astype(np.float32) * (1.0 / 255.0)
            affines.append(affine)
            grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
            details.append(float(cv2.Laplacian(grey, cv2.CV_32F).var()) / max(float(grey.var()), 1e-6))
        detail = float(np.mean(details))
        if detail < min_detail:
            return None, detail
        (iris,) = self.iris.run(None, {self.iris.get_inputs()[0].name: crops})
        out = np.empty((2, 2))
        for k in range(2):
            u, v = iris[k].reshape(-1, 3)[0, :2] / IRIS_SIZE
            if k == 1:
                u = 1.0 - u
            out[k] = map_points(affines[k], np.array([[u, v]]))[0]
        return out, detail

    # -- detector -------------------------------------------------------------------------------

    def __call__(self, batch: FrameBatch) -> Signals:
        return self.signals(batch)

    def signals(self, batch: FrameBatch) -> Signals:
        """The ``COLUMNS`` of a batch."""
        return self.run(batch)[0]

    def run(
        self,
        batch: FrameBatch,
        detect: Callable[[int], Faces] | None = None,
        detect_far: Callable[[int], Faces] | None = None,
    ) -> tuple[Signals, list[MainFace]]:
        """The ``COLUMNS`` of a batch, and per frame what was found of the main face.

        ``detect(i)``: frame ``i``'s short-range BlazeFace faces (at a score at or below ``min_face_score``, NMS
        IoU 0.3), when the caller runs that pass itself; it is only called on frames the track does not cover.
        ``detect_far(i)``: frame ``i``'s faces from a pass that finds faces too small for the short-range model
        (empty where it does not run on that frame); it is only called where ``detect`` gives no main face. The
        short-range model finds a face once it is about an eighth of the frame's width (80 px in 640x480, 150 px
        in 1280x720): a candidate leaning back from an HD webcam, or a wide-angle one, is smaller, and the track
        started from the full-range model reads their head within 1-2 degrees of the same frames at full size.
        Where the mesh cannot read a face from that pass, its keypoints give no coarse pose: a pass that runs once a
        second would only break a run of unreadable head (``pipelines.evidence.UnreadableHead``) into pieces.
        """
        cfg = self.config
        n = len(batch)

        def own_pass(i: int) -> Faces:
            return self.detector.detect([batch.frames[i]], cfg.min_face_score, DETECTION_NMS_IOU)[0]

        detect_faces = detect or own_pass
        found: list[MainFace] = [MainFace()] * n
        cols = {name: np.full(n, np.nan) for name in COLUMNS}
        iris_due = rate_mask(batch.timestamps_ms, cfg.iris_every_ms)
        redetect = rate_mask(batch.timestamps_ms, cfg.redetect_every_ms)
        track: Track | None = None
        previous: Roi | None = None  # where the main face's landmarks were on the previous frame
        for i, frame in enumerate(batch.frames):
            mesh = current = None
            if track is not None and previous is not None and not redetect[i]:
                mesh = self.mesh(frame, track.follow(previous))
                current = landmarks_roi(mesh.landmarks)
                if track_jumped(previous, current):
                    mesh = None  # a cut or a fast move: the old ROI no longer frames this face
            if mesh is None or mesh.score < cfg.min_landmark_score:
                track = None
                faces = detect_faces(i)
                main = self.main_face(faces)
                far = False
                if main is None and detect_far is not None:
                    faces, far = detect_far(i), True
                    main = self.main_face(faces)
                mesh = None
                if main is not None:
                    mesh, detected = self.started(frame, roi_from_box(faces.boxes[main], faces.keypoints[main, :2]))
                    if far:
                        found[i] = MainFace(far=faces.select(np.arange(len(faces)) == main), mesh_score=mesh.score)
                    else:
                        found[i] = MainFace(detection=main, mesh_score=mesh.score)
                    if mesh.score < cfg.min_landmark_score:
                        cols["landmark_score"][i] = mesh.score
                        if not far:
                            keypoints = faces.keypoints[main].astype(np.float64)
                            cols["head_yaw_coarse_deg"][i] = yaw_from_keypoints(keypoints)
                            cols["head_pitch_coarse_deg"][i] = pitch_from_keypoints(keypoints)
                        mesh = None
                    else:
                        current = landmarks_roi(mesh.landmarks)
                        track = Track(detected, current) if cfg.track else None
            if mesh is None or current is None:
                previous = None
                continue
            lm = mesh.landmarks
            previous = current
            found[i] = replace(found[i], landmarks=current, points=lm)
            yaw, pitch, roll = head_pose(lm)
            cols["landmark_score"][i] = mesh.score
            cols["head_yaw_deg"][i] = yaw
            cols["head_pitch_deg"][i] = pitch
            cols["head_roll_deg"][i] = roll
            cols["eye_openness"][i] = eye_openness(lm)
            (cols["gaze_face_x_px"][i], cols["gaze_face_y_px"][i]), cols["gaze_face_size_px"][i], _ = current
            if self.iris is not None and iris_due[i]:
                irises, detail = self.run_iris(frame, lm, cfg.min_eye_detail)
                cols["eye_detail"][i] = detail
                if irises is not None:
                    cols["eye_gaze_h"][i], cols["eye_gaze_v"][i] = eye_gaze(lm, irises)
        return Signals(batch.timestamps_ms, cols), found
