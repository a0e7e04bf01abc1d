"""Face identity: dlib's 128-d face descriptor of a chip aligned from the face mesh we already have.

The model (``models/face_descriptor.onnx``, dlib's ResNet face descriptor converted to ONNX) was trained
on 150x150 chips that dlib cuts with a similarity transform fitting 5 landmarks (the eye corners and the
bottom of the nose) to a fixed template. Its descriptors are only comparable when our chips are cut the
same way, so ``chip`` replicates dlib's ``get_face_chip_details``/``extract_image_chips`` geometry
(Umeyama least-squares fit, including dlib's ``centered_drect`` half-pixel quirk) from the face mesh's
matching points instead of running dlib's own 5-point predictor. Measured against dlib's chips of the
same faces (379 faces, research note ``chip_alignment.md``): descriptor distance median 0.10, max 0.38,
against dlib's 0.6 decision threshold; same/different-person decisions agree on 99.96% of pairs.

Distances, not probabilities: two descriptors closer than 0.6 (euclidean) are the same person by dlib's
rule. This says whose face it is, not whether it is a live one (no liveness or anti-spoofing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from models import resolve_model

from .geometry import LEFT_EYE_INNER, LEFT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_EYE_OUTER
from .imaging import rgb_spread, shrink
from .runtime import RuntimeConfig, create_session

__all__ = [
    "CHIP_SIZE",
    "CHIP_TEMPLATE",
    "DESCRIPTOR_SIZE",
    "MESH_TO_DLIB5",
    "FaceEmbedder",
    "IdentityConfig",
    "chip_chroma",
    "chip_sharpness",
    "chip_to_image",
    "descriptor_distance",
    "similarity_fit",
    "template",
]

FloatArray = NDArray[np.float64]

CHIP_SIZE = 150
CHIP_PADDING = 0.25
DESCRIPTOR_SIZE = 128
NOSE_BOTTOM = 2
"""The mesh's subnasale ("noseBottom" in MediaPipe's keypoint annotations)."""
MESH_TO_DLIB5 = (LEFT_EYE_OUTER, LEFT_EYE_INNER, RIGHT_EYE_OUTER, RIGHT_EYE_INNER, NOSE_BOTTOM)
"""Face mesh indices of dlib's 5 parts, in dlib's order: image-right eye outer and inner corner, image-left
eye outer and inner corner, bottom of the nose. Nearest mesh points to dlib's predictor's, within ~2 chip px."""

_DLIB5_UNIT = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)  # dlib 20.0.1 interpolation.h, get_face_chip_details: the template in the unit face square
CHIP_TEMPLATE: FloatArray = CHIP_SIZE * (CHIP_PADDING + _DLIB5_UNIT) / (1 + 2 * CHIP_PADDING)
"""dlib's 5-point template in chip pixels (x right, y down, pixel centres at integers), padding 0.25."""


@dataclass(frozen=True)
class IdentityConfig:
    """Settings for the face descriptor."""

    match_distance: float = 0.55
    """Descriptors closer than this (euclidean) are the same person. dlib's own threshold is 0.6 (99.13% on LFW,
    as its authors report); 0.55 is the pipeline's operating point (``pipelines.identity.IdentityRule``). On our
    session footage same-person pairs had a median of 0.14, different-person pairs 0.85."""
    shrink_above: float = 2.0
    """Faces whose chip would sample the frame more sparsely than one chip pixel per this many frame pixels
    (outer eye corners ~150 px apart) are first shrunk by a power of two with area averaging, as dlib does
    with its image pyramid; bilinear sampling alone would alias. ``inf`` turns it off."""

    every_ms: int = 5000
    """In a session, embed the tracked face at most once per this many ms, plus whenever its track starts
    (a face that appears, or comes back): a few times a minute, and at once around the events that matter."""
    max_abs_yaw_deg: float = 30.0
    max_abs_pitch_deg: float = 30.0
    """Only near-frontal faces are embedded: a turned head gives a descriptor far from the same person's."""
    min_face_px: float = 60.0
    """Only faces this large (the mesh ROI's side / 1.5) are embedded: smaller chips are upscaled blur."""
    min_landmark_score: float = 0.7
    """Only faces the mesh is sure of are embedded."""
    min_chroma: float = 8.0
    """In a session, chips with less colour than this (``chip_chroma``) are not compared: on greyscale stills
    of real people the same person's descriptors sat as far apart as different people's (true-accept rate
    0.89 at a 26% false-accept rate at 0.6), so a decision there would be a coin toss (benchmarks/identity.py)."""
    min_sharpness: float = 0.035
    """Chips with less detail than this (``chip_sharpness``; the enrolment check's threshold) are not
    compared: webcam faces read 0.07-0.13, upscaled low-resolution faces 0.004-0.02."""

    def __post_init__(self) -> None:
        if self.every_ms < 0 or self.min_face_px < 0:
            raise ValueError(f"IdentityConfig: expected every_ms >= 0 and min_face_px >= 0, found {self}")
        if not 0.0 < self.min_landmark_score < 1.0:
            raise ValueError(f"IdentityConfig.min_landmark_score: expected in (0, 1), found {self.min_landmark_score}")
        if not 0.0 < self.match_distance < math.inf:
            raise ValueError(f"IdentityConfig.match_distance: expected a finite value > 0, found {self.match_distance}")
        if not self.shrink_above >= 1.0:
            raise ValueError(f"IdentityConfig.shrink_above: expected >= 1, found {self.shrink_above}")


def similarity_fit(src: FloatArray, dst: FloatArray) -> FloatArray:
    """The least-squares similarity (rotation, uniform scale, translation; no reflection) taking ``src`` (K, 2)
    onto ``dst`` (K, 2), as a 2x3 affine: Umeyama's closed form, which is dlib's ``find_similarity_transform``.

    Not ``cv2.estimateAffinePartial2D``: it defaults to RANSAC, whose fit is not the one dlib's chips use.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    s0, d0 = src - src.mean(0), dst - dst.mean(0)
    var = float((s0**2).sum(1).mean())
    cov = d0.T @ s0 / len(src)
    u, d, vt = np.linalg.svd(cov)
    flip = np.eye(2)
    if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        flip[(1, 1) if d[1] < d[0] else (0, 0)] = -1.0  # reflect along the weaker axis, as dlib does
    rotation = u @ flip @ vt
    scale = 1.0 if var == 0 else float(np.trace(np.diag(d) @ flip) / var)
    t = dst.mean(0) - scale * rotation @ src.mean(0)
    return np.hstack([scale * rotation, t[:, None]])


def chip_to_image(points5: FloatArray) -> FloatArray:
    """2x3 affine from chip pixels to frame pixels for dlib's 5 points (5, 2) in the frame, as dlib samples.

    dlib does not sample with the fitted transform T itself: it keeps T's angle and scale s and a rectangle
    of side ``150 s - 1`` centred on T(75, 75) (``centered_drect`` subtracts one), and maps the chip's
    0..149 onto that. The difference is about half a chip pixel, which we keep to match dlib's chips.
    """
    fit = similarity_fit(CHIP_TEMPLATE, points5)
    scale = math.hypot(fit[0, 0], fit[1, 0])
    if CHIP_SIZE * scale <= 1.0:
        raise ValueError(f"chip_to_image: the 5 points span {scale * CHIP_SIZE:.3g} px; expected a real face")
    linear = fit[:, :2] * ((CHIP_SIZE * scale - 1.0) / (CHIP_SIZE - 1) / scale)
    centre = fit[:, :2] @ np.full(2, CHIP_SIZE / 2) + fit[:, 2]
    return np.hstack([linear, (centre - linear @ np.full(2, (CHIP_SIZE - 1) / 2))[:, None]])


CHIP_CENTRE = slice(CHIP_SIZE // 6, CHIP_SIZE - CHIP_SIZE // 6)
"""The face proper inside a chip (dlib's padding puts background and hair in the outer sixth)."""


def chip_sharpness(chip: NDArray[np.uint8]) -> float:
    """Variance of the Laplacian of an aligned chip's grey centre over the variance of its grey levels.

    Detail at the descriptor's own scale, whatever the photo's resolution; divided by the contrast so that a
    dim or low-contrast face is not called blurred (a raw Laplacian variance falls with the square of the
    contrast: a face at half exposure read a quarter). 0 for a flat chip.
    """
    grey = cv2.cvtColor(np.ascontiguousarray(chip[CHIP_CENTRE, CHIP_CENTRE]), cv2.COLOR_RGB2GRAY).astype(np.float64)
    spread = float(grey.var())
    return float(cv2.Laplacian(grey, cv2.CV_64F).var()) / spread if spread > 1e-6 else 0.0


def chip_chroma(chip: NDArray[np.uint8]) -> float:
    """Median colourfulness (``imaging.rgb_spread``) of the chip's centre."""
    return rgb_spread(chip[CHIP_CENTRE, CHIP_CENTRE])


def descriptor_distance(a: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]]) -> FloatArray:
    """Euclidean distance between descriptors along the last axis, broadcasting the others (dlib's metric).

    Two (128,) descriptors give a 0-d array; (N, 128) against (128,) gives (N,).
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape[-1:] != (DESCRIPTOR_SIZE,) or b64.shape[-1:] != (DESCRIPTOR_SIZE,):
        raise ValueError(
            f"descriptor_distance: expected (..., {DESCRIPTOR_SIZE}) arrays, found {a64.shape}, {b64.shape}"
        )
    return np.asarray(np.sqrt(((a64 - b64) ** 2).sum(-1)), np.float64)


def template(descriptors: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """One reference descriptor (128,) from several frames of the same face (N, 128): their mean.

    A single frame carries its pose, light and blur; averaging a few steadies the reference (the
    descriptor space is euclidean, so the mean is the point closest to all of them on average).
    """
    d = np.asarray(descriptors, np.float32)
    if d.ndim != 2 or d.shape[1] != DESCRIPTOR_SIZE or len(d) == 0:
        raise ValueError(f"template: expected (N >= 1, {DESCRIPTOR_SIZE}) descriptors, found {d.shape}")
    return np.asarray(d.mean(axis=0), np.float32)


class FaceEmbedder:
    """The face descriptor model behind one ONNX Runtime session: aligned chips in, 128-d descriptors out.

    ``chip`` and ``embed`` are separate so a caller can cut chips frame by frame and embed them in one batch.
    """

    def __init__(self, config: IdentityConfig | None = None, runtime: RuntimeConfig | None = None) -> None:
        self.config = config or IdentityConfig()
        self.session: ort.InferenceSession = create_session(
            resolve_model("face_descriptor").path, runtime or RuntimeConfig(), model_name="face_descriptor"
        )
        self._input = self.session.get_inputs()[0].name

    def chip(self, frame: NDArray[np.uint8], landmarks: FloatArray) -> NDArray[np.uint8]:
        """dlib's aligned (150, 150, 3) RGB chip of the face whose (468, 2|3) mesh landmarks (frame pixels) are given.

        Bilinear (OpenCV: rounded, 1/32-pixel grid, where dlib truncates): against dlib's own sampling from
        the same 5 points the descriptors differ by a median 0.008. Outside the frame the chip is black, as dlib's.
        """
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"chip: expected an RGB uint8 (H, W, 3) frame, found {frame.dtype} {frame.shape}")
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim != 2 or lm.shape[0] != 468 or lm.shape[1] < 2:
            raise ValueError(f"chip: expected (468, 2 or 3) face mesh landmarks, found {lm.shape}")
        affine = chip_to_image(lm[list(MESH_TO_DLIB5), :2])
        scale = math.hypot(affine[0, 0], affine[1, 0])  # frame pixels per chip pixel
        if scale > self.config.shrink_above:
            frame, affine = _shrunk(frame, affine, 2 ** int(math.log2(scale)))
        chip = cv2.warpAffine(
            frame,
            affine,
            (CHIP_SIZE, CHIP_SIZE),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        return np.asarray(chip, np.uint8)

    def embed(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Descriptors (N, 128) of (N, 150, 150, 3) RGB uint8 chips, in one ONNX Runtime call.

        The graph normalises itself (dlib's channel means, / 256), so raw pixel values go in.
        """
        x = np.asarray(chips)
        if x.ndim != 4 or x.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or x.dtype != np.uint8:
            raise ValueError(
                f"embed: expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 chips (chip[None] for one), "
                f"found {x.dtype} {x.shape}"
            )
        if len(x) == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        (out,) = self.session.run(None, {self._input: nchw})
        return np.asarray(out, np.float32)

    def matches(
        self, descriptors: NDArray[np.floating[Any]], reference: NDArray[np.floating[Any]]
    ) -> NDArray[np.bool_]:
        """Whether each descriptor is the reference's person: closer than ``config.match_distance``."""
        return np.asarray(descriptor_distance(descriptors, reference) < self.config.match_distance, np.bool_)


def _shrunk(frame: NDArray[np.uint8], affine: FloatArray, f: int) -> tuple[NDArray[np.uint8], FloatArray]:
    """The part of ``frame`` the chip samples, area-averaged down by ``f``, and the chip affine into it.

    Only the chip's footprint is shrunk, not the whole frame; it is cut to a multiple of ``f`` so the factor
    is exact. A shrunk pixel j covers frame pixels f*j .. f*j + f - 1, centre f*j + (f - 1) / 2.
    """
    corners = np.array([[0, 0, 1], [CHIP_SIZE - 1, 0, 1], [0, CHIP_SIZE - 1, 1], [CHIP_SIZE - 1, CHIP_SIZE - 1, 1]])
    xy = corners @ affine.T
    h, w = frame.shape[:2]
    x0, y0 = (max(0, math.floor(v) - f) for v in xy.min(0))
    x1, y1 = min(w, math.ceil(xy[:, 0].max()) + f + 1), min(h, math.ceil(xy[:, 1].max()) + f + 1)
    cw, ch = (x1 - x0) // f * f, (y1 - y0) // f * f
    if cw < f or ch < f:  # the face is (almost) outside the frame: nothing to shrink
        return frame, affine
    small = shrink(frame[y0 : y0 + ch, x0 : x0 + cw], cw // f, ch // f)  # exact 2x2 means, halving
    shifted = affine.copy()
    shifted[:, 2] -= (x0 + (f - 1) / 2, y0 + (f - 1) / 2)
    return small, shifted / f
