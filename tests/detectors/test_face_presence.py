"""Face presence on real faces: golden boxes, a no-face negative, composites, MediaPipe parity."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from detectors import FacePresenceConfig, FacePresenceDetector, FrameBatch
from detectors.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFace, decode, letterbox, ssd_anchors, weighted_nms
from detectors.face_presence import overlaps, rate_mask, tile_boxes
from detectors.imaging import shrink
from detectors.runtime import RuntimeConfig

from .conftest import ASTRONAUT_BOX, GRACE_BOX, Image, batch_of, face_crop, paste

mp = pytest.importorskip("mediapipe", reason="the reference for parity: pip install -e '.[mediapipe]'")

BOX_TOLERANCE_PX = 10.0


def iou(a: Any, b: Any) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class FixedOutput:
    """Stands in for a BlazeFace ONNX session: the same raw boxes and score logits for any input."""

    def __init__(self, boxes: np.ndarray, logits: np.ndarray) -> None:
        self.outputs = [boxes, logits]

    def run(self, _names: Any, _feed: Any) -> list[np.ndarray]:
        return self.outputs


def test_weaker_anchors_never_move_a_sure_face() -> None:
    """With ``sure_score``, anchors below it are merged apart: a sure face keeps the box it has without them."""
    detector = BlazeFace(SHORT_RANGE, RuntimeConfig())
    n = len(detector.anchors)
    boxes, logits = np.zeros((1, n, 16), np.float32), np.full((1, n, 1), -10.0, np.float32)
    boxes[0, :2, 2:4] = 40.0  # two 40 px boxes on the first cell's two anchors
    boxes[0, 1, 0] = 6.0  # the second 6 px to the right (IoU 0.74: one cluster)
    logits[0, 0, 0], logits[0, 1, 0] = 3.0, 0.2  # scores 0.95 and 0.55
    detector.session = FixedOutput(boxes, logits)  # type: ignore[assignment]
    image = np.zeros((128, 128, 3), np.uint8)
    mixed = detector.detect([image], 0.5, 0.3)[0]
    sure = detector.detect([image], 0.6, 0.3)[0]
    split = detector.detect([image], 0.5, 0.3, sure_score=0.6)[0]
    assert len(mixed) == 1 and mixed.boxes[0, 0] > sure.boxes[0, 0] + 1, "merged, the weak anchor drags the box"
    assert len(split) == 2 and split.scores[1] < 0.6
    np.testing.assert_array_equal(split.boxes[:1], sure.boxes)


@pytest.mark.parametrize(("spec", "count"), [(SHORT_RANGE, 896), (FULL_RANGE, 2304)])
def test_anchor_layout_matches_mediapipe(spec: Any, count: int) -> None:
    anchors = ssd_anchors(spec)
    assert anchors.shape == (count, 2)
    assert anchors.min() > 0 and anchors.max() < 1


def test_decode_places_a_box_on_its_anchor() -> None:
    anchors = np.array([[0.5, 0.5], [0.25, 0.25]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    raw[0, :4] = [12.8, 0.0, 64.0, 32.0]  # shift x by 0.1, w 0.5, h 0.25 of a 128 input
    scores = np.array([[5.0], [-5.0]], np.float32)
    boxes, s, kps = decode(raw, scores, anchors, 128, 0.5)
    assert s.shape == (1,)
    np.testing.assert_allclose(boxes[0], [0.35, 0.375, 0.85, 0.625], atol=1e-6)
    np.testing.assert_allclose(kps[0, :, 0], 0.5, atol=1e-6)


@pytest.mark.parametrize(
    ("boxes", "scores", "kept"),
    [
        ([[0, 0, 1, 1], [0.05, 0, 1.05, 1], [2, 2, 3, 3]], [0.9, 0.8, 0.7], 2),
        ([[0, 0, 1, 1], [0.9, 0.9, 1.9, 1.9]], [0.9, 0.8], 2),
        ([[0, 0, 1, 1]], [0.9], 1),
    ],
)
def test_weighted_nms_merges_overlapping_anchors(boxes: Any, scores: Any, kept: int) -> None:
    b = np.asarray(boxes, np.float32)
    s = np.asarray(scores, np.float32)
    out_b, out_s, _ = weighted_nms(b, s, np.zeros((len(s), 6, 2), np.float32), 0.3)
    assert len(out_s) == kept
    assert out_s[0] == pytest.approx(s.max())
    if kept == 2 and len(s) == 3:  # the cluster's box is the score-weighted mean
        np.testing.assert_allclose(out_b[0, 0], 0.05 * 0.8 / 1.7, atol=1e-6)


def test_letterbox_keeps_aspect_ratio() -> None:
    square, scale, px, py = letterbox(np.full((720, 1280, 3), 200, np.uint8), 128)
    assert scale == pytest.approx(0.1)
    assert (px, py) == (0.0, 28.0)
    assert square[0, 0, 0] == 0 and square[64, 64, 0] == 200


@pytest.mark.parametrize("size", [(128, 96), (192, 144), (128, 72), (300, 225)])
def test_shrink_stays_close_to_area_averaging(astronaut: Image, size: tuple[int, int]) -> None:
    frame = cv2.resize(astronaut, (640, 480), interpolation=cv2.INTER_LINEAR)
    area = cv2.resize(frame, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    fast = shrink(frame, *size)
    assert fast.shape == (size[1], size[0], 3) and fast.dtype == np.uint8
    assert np.abs(fast - area).mean() < 3.0  # grey levels; plain bilinear at 5x is 4.5-5 off here


@pytest.mark.parametrize("min_score", [0.0, 0.3, 0.5, 0.75, 1.0])
def test_decode_keeps_exactly_the_scores_at_or_above_min_score(min_score: float) -> None:
    anchors = ssd_anchors(SHORT_RANGE)
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 20, (len(anchors), 1)).astype(np.float32)
    logits[:4, 0] = [0.0, np.log(0.3 / 0.7), np.log(3.0), 40.0]  # sigmoids 0.5, 0.3, 0.75 and 1.0 (rounded)
    boxes = rng.normal(0, 5, (len(anchors), 16)).astype(np.float32)
    _, scores, _ = decode(boxes, logits, anchors, 128, min_score)
    expected = 1.0 / (1.0 + np.exp(-np.clip(logits[:, 0].astype(np.float64), -100, 100)))
    np.testing.assert_allclose(np.sort(scores), np.sort(expected[expected >= min_score]).astype(np.float32))


def test_overlaps_uses_the_smaller_box() -> None:
    big = np.array([[0, 0, 100, 100]], np.float32)
    inner = np.array([[10, 10, 40, 40], [200, 200, 220, 220]], np.float32)
    np.testing.assert_array_equal(overlaps(inner, big, 0.5), [True, False])


@pytest.mark.parametrize(
    ("timestamps", "every", "expected"),
    [
        ([0, 66, 133, 200, 266], 0, [1, 1, 1, 1, 1]),
        ([0, 66, 133, 200, 266], 200, [1, 0, 0, 1, 0]),
        ([150, 210, 390, 410], 200, [1, 1, 0, 1]),
    ],
)
def test_rate_mask_follows_absolute_time(timestamps: list[int], every: int, expected: list[int]) -> None:
    np.testing.assert_array_equal(rate_mask(np.array(timestamps), every), np.array(expected, bool))


@pytest.mark.parametrize(("image", "golden"), [("astronaut", ASTRONAUT_BOX), ("grace", GRACE_BOX)])
def test_one_real_face_with_golden_box(
    presence: FacePresenceDetector, image: str, golden: tuple[float, ...], request: pytest.FixtureRequest
) -> None:
    img = request.getfixturevalue(image)
    faces = presence.detect(batch_of(img))[0]
    assert len(faces) == 1
    assert faces.scores[0] > 0.8
    # The counted box comes from the full-range pass, which boxes a face taller than the
    # short-range golden box: same centre (within tolerance), looser IoU. The tight per-model
    # comparison is test_parity_with_mediapipe_face_detection.
    box, gold = faces.boxes[0], np.asarray(golden)
    assert abs((box[0] + box[2]) / 2 - (gold[0] + gold[2]) / 2) < BOX_TOLERANCE_PX
    assert abs((box[1] + box[3]) / 2 - (gold[1] + gold[3]) / 2) < 2 * BOX_TOLERANCE_PX
    assert iou(box, golden) > 0.65
    signals = presence(batch_of(img))
    assert signals["face_count"][0] == 1
    assert signals["face_too_small"][0] == 0


def test_no_face_negative(presence: FacePresenceDetector, no_face: Image) -> None:
    signals = presence(batch_of(no_face))
    assert signals["face_count"][0] == 0
    assert signals["face_score_max"][0] == 0
    assert np.isnan(signals["face_size_px"][0])


def test_two_face_composite(presence: FacePresenceDetector, astronaut: Image, grace: Image) -> None:
    canvas = np.full((480, 640, 3), 90, np.uint8)
    a = paste(canvas, face_crop(astronaut, ASTRONAUT_BOX), 20, 100, 280)
    g = paste(canvas, face_crop(grace, GRACE_BOX), 340, 80, 280)
    signals = presence(batch_of(canvas))
    assert signals["face_count"][0] == 2
    faces = presence.detect(batch_of(canvas))[0]
    centres = sorted(float(b[0] + b[2]) / 2 for b in faces.boxes)
    assert a[0] < centres[0] < a[2] and g[0] < centres[1] < g[2]


def test_small_far_face_next_to_the_candidate(presence: FacePresenceDetector, astronaut: Image, grace: Image) -> None:
    """A ~53 px second face in 640x480, which the short-range model alone misses."""
    canvas = np.full((480, 640, 3), 110, np.uint8)
    paste(canvas, face_crop(astronaut, ASTRONAUT_BOX), 40, 60, 330)
    far = face_crop(grace, GRACE_BOX, margin=0.3)
    paste(canvas, far, 480, 120, 90)
    short_only = FacePresenceDetector(FacePresenceConfig(full_range=False, tiled=False))
    assert short_only(batch_of(canvas))["face_count"][0] == 1
    signals = presence(batch_of(canvas))
    assert signals["face_count"][0] == 2
    assert signals["second_face_size_px"][0] == pytest.approx(53, abs=10)


@pytest.mark.parametrize(
    ("size", "where"), [(50, (480, 120)), (50, (300, 300)), (60, (300, 300)), (75, (480, 120)), (75, (560, 40))]
)
def test_tiles_find_faces_the_whole_frame_passes_miss(
    presence: FacePresenceDetector, astronaut: Image, grace: Image, size: int, where: tuple[int, int]
) -> None:
    """Faces of ~26-46 px behind the candidate: the whole-frame passes miss these, the tiled pass finds them."""
    canvas = np.full((480, 640, 3), 110, np.uint8)
    paste(canvas, face_crop(astronaut, ASTRONAUT_BOX), 40, 60, 330)
    x0, y0, x1, y1 = paste(canvas, face_crop(grace, GRACE_BOX, margin=0.3), *where, size)
    untiled = FacePresenceDetector(FacePresenceConfig(tiled=False))
    assert untiled(batch_of(canvas))["face_count"][0] == 1
    faces = presence.detect(batch_of(canvas))[0]
    assert len(faces) == 2
    bx0, by0, bx1, by1 = faces.boxes[1]
    assert x0 <= (bx0 + bx1) / 2 <= x1 and y0 <= (by0 + by1) / 2 <= y1, "the second face is the pasted one"


@pytest.mark.parametrize(
    ("width", "height", "grid", "overlap"), [(640, 480, 2, 0.25), (1280, 720, 3, 0.2), (640, 480, 2, 0.0)]
)
def test_tiles_cover_the_frame_with_overlap(width: int, height: int, grid: int, overlap: float) -> None:
    boxes = tile_boxes(width, height, grid, overlap)
    assert len(boxes) == grid * grid
    covered = np.zeros((height, width), bool)
    for x, y, w, h in boxes:
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
        assert w == pytest.approx(width / grid * (1 + overlap), abs=1)
        covered[y : y + h, x : x + w] = True
    assert covered.all()


def test_large_frame_keeps_its_face(presence: FacePresenceDetector, grace: Image) -> None:
    canvas = np.full((720, 1280, 3), 60, np.uint8)
    paste(canvas, face_crop(grace, GRACE_BOX, 0.4), 700, 150, 300)
    signals = presence(batch_of(canvas))
    assert signals["face_count"][0] == 1
    assert 0.5 < signals["face_cx"][0] < 0.8


def test_small_face_too_small_flag_and_threshold(astronaut: Image) -> None:
    canvas = np.full((480, 640, 3), 110, np.uint8)
    paste(canvas, face_crop(astronaut, ASTRONAUT_BOX, 0.4), 300, 200, 90)
    signals = FacePresenceDetector()(batch_of(canvas))
    assert signals["face_count"][0] == 1 and signals["face_too_small"][0] == 1
    strict = FacePresenceDetector(FacePresenceConfig(min_face_px=80.0))
    assert strict(batch_of(canvas))["face_count"][0] == 0


@pytest.mark.parametrize(("image", "selection"), [("astronaut", 0), ("grace", 0), ("astronaut", 1), ("grace", 1)])
def test_parity_with_mediapipe_face_detection(image: str, selection: int, request: pytest.FixtureRequest) -> None:
    """Our decode of the converted models agrees with MediaPipe's own graph on the same image."""
    from detectors.blazeface import BlazeFace
    from detectors.runtime import RuntimeConfig

    img = request.getfixturevalue(image)
    h, w = img.shape[:2]
    with mp.solutions.face_detection.FaceDetection(model_selection=selection, min_detection_confidence=0.5) as fd:
        result = fd.process(img)
    assert result.detections and len(result.detections) == 1
    det = result.detections[0]
    bb = det.location_data.relative_bounding_box
    theirs = (bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h)
    model = BlazeFace(SHORT_RANGE if selection == 0 else FULL_RANGE, RuntimeConfig(device="cpu"))
    ours = model.detect([img], 0.5, 0.3)[0]
    assert len(ours) == 1
    assert iou(ours.boxes[0], theirs) > 0.9
    assert ours.scores[0] == pytest.approx(det.score[0], abs=0.03)
    kp = det.location_data.relative_keypoints
    theirs_eyes = np.array([[kp[0].x * w, kp[0].y * h], [kp[1].x * w, kp[1].y * h]])
    assert np.abs(ours.keypoints[0, :2] - theirs_eyes).max() < 0.06 * (theirs[2] - theirs[0])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"min_score": 0.0}, "min_score"),
        ({"full_range_min_score": 1.5}, "full_range_min_score"),
        ({"min_face_px": -1.0}, "non-negative sizes"),
        ({"full_range_every_ms": -5}, "full_range_every_ms"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        FacePresenceConfig(**kwargs)


def test_batch_of_several_frames_matches_single_frames(presence: FacePresenceDetector, astronaut: Image) -> None:
    frames = [astronaut, np.zeros_like(astronaut), astronaut]
    together = presence(FrameBatch(np.stack(frames)[:, :, ::-1], np.array([0, 66, 133])))  # mirrored view
    np.testing.assert_array_equal(together["face_count"], [1, 0, 1])
