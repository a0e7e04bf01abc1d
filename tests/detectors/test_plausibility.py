"""Not every face is a candidate: doubtful faces must pass the joint plausibility check."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from detectors import FaceAnalysisDetector, FacePresenceConfig, FacePresenceDetector, FrameBatch
from detectors.plausibility import PictureFrameRule, PlausibilityRule, colourful, framed
from pipelines.people import Fixtures, fixture_frames

from .conftest import ASTRONAUT_BOX, GRACE_BOX, Image, darkened, face_crop, paste


def scene(patch: Image, size: int = 300) -> Image:
    canvas = np.full((480, 640, 3), 115, np.uint8)
    paste(canvas, patch, 170, 80, size)
    return canvas


@pytest.fixture(scope="module")
def cat() -> Image:
    from skimage import data  # the demo's cat: skimage chelsea, which BlazeFace scores 0.52-0.57 as a face

    return np.ascontiguousarray(data.chelsea())


@pytest.fixture(scope="module")
def analysis() -> FaceAnalysisDetector:
    return FaceAnalysisDetector(identity=None)


def frames_of(image: Image, n: int = 10) -> FrameBatch:
    return FrameBatch(np.stack([image] * n), np.arange(n, dtype=np.int64) * 200)


def test_a_cat_is_not_a_candidate(cat: Image, presence: FacePresenceDetector, analysis: FaceAnalysisDetector) -> None:
    assert len(presence.faces(cat)) == 0
    signals = analysis(frames_of(cat))
    assert signals["face_count"].tolist() == [0] * 10
    assert np.isnan(signals["head_yaw_deg"]).all(), "no head pose from an animal"


@pytest.mark.parametrize("gamma", [1.0, 0.4, 0.25])
def test_a_real_face_in_poor_light_still_counts(astronaut: Image, analysis: FaceAnalysisDetector, gamma: float) -> None:
    frame = darkened(scene(face_crop(astronaut, ASTRONAUT_BOX)), gamma)
    assert analysis(frames_of(frame))["face_count"].tolist() == [1] * 10


@pytest.mark.parametrize("gamma", [1.0, 0.4, 0.25])
def test_a_real_face_passes_when_every_tracked_face_is_judged(astronaut: Image, gamma: float) -> None:
    """The tracked face is judged below 0.8 (dogs scored 0.71-0.74); a real face must pass at any score."""
    judge_all = FacePresenceConfig(plausibility=PlausibilityRule(tracked_face_below=1.01))
    frame = darkened(scene(face_crop(astronaut, ASTRONAUT_BOX)), gamma)
    signals = FaceAnalysisDetector(presence=judge_all, identity=None)(frames_of(frame))
    assert signals["face_count"].tolist() == [1] * 10


def test_grey_pictures_are_not_judged(astronaut: Image) -> None:
    grey = np.repeat(astronaut.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    box = np.array(ASTRONAUT_BOX, np.float32)
    assert colourful(astronaut, box, 8.0) and not colourful(grey, box, 8.0)


@pytest.mark.parametrize(
    ("mesh", "full", "short", "person"),
    [
        (0.9, 0.95, 0.9, True),  # a clear face
        (0.02, 0.8, 0.55, True),  # a dark face: the mesh gives up, the full-range model still finds it
        (0.3, 0.0, 0.56, False),  # the cat: short range only, a middling mesh score
        (0.75, 0.0, 0.6, True),  # short range only, but the mesh is sure
    ],
)
def test_the_joint_rule(mesh: float, full: float, short: float, person: bool) -> None:
    rule = PlausibilityRule()
    assert (rule.score(mesh, full, short) >= rule.threshold) is person


def room_with_candidate(grace: Image) -> Image:
    """A grey wall and the candidate (Grace Hopper) large in front of it, on the right."""
    canvas = np.full((480, 640, 3), 115, np.uint8)
    paste(canvas, face_crop(grace, GRACE_BOX), 260, 100, 330)
    return canvas


def small_face(astronaut: Image, width: int = 130) -> Image:
    """The astronaut's head and shoulders, ``width`` px wide: a face of ~55 px, a third of the candidate's."""
    patch = face_crop(astronaut, ASTRONAUT_BOX, 0.8)
    return np.ascontiguousarray(cv2.resize(patch, (width, round(patch.shape[0] * width / patch.shape[1]))))


def with_poster(room: Image, picture: Image, x: int = 40, y: int = 40) -> Image:
    """``picture`` hung on the wall at (x, y) in a white mount with a thin dark edge, as posters are framed."""
    out = room.copy()
    h, w = picture.shape[:2]
    cv2.rectangle(out, (x - 3, y - 3), (x + w + 2, y + h + 2), (236, 236, 236), -1)
    cv2.rectangle(out, (x - 4, y - 4), (x + w + 3, y + h + 3), (60, 60, 60), 1)
    out[y : y + h, x : x + w] = picture
    return out


def with_person(room: Image, picture: Image, x: int = 40, y: int = 40) -> Image:
    """``picture`` blended into the wall through a soft oval, with no straight edge: a person further back."""
    out = room.copy()
    h, w = picture.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    oval = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    alpha = np.clip(1.6 - 1.5 * oval, 0.0, 1.0)[..., None]
    region = out[y : y + h, x : x + w].astype(np.float32)
    out[y : y + h, x : x + w] = (picture * alpha + region * (1 - alpha)).astype(np.uint8)
    return out


def test_a_framed_picture_behind_the_candidate_is_not_a_second_person(astronaut: Image, grace: Image) -> None:
    scene = with_poster(room_with_candidate(grace), small_face(astronaut))
    unframed_rule = FacePresenceDetector(FacePresenceConfig(picture_frames=None))
    assert len(unframed_rule.faces(scene)) == 2, "both faces are found"
    assert len(FacePresenceDetector().faces(scene)) == 1


def hung_crooked(room: Image, picture: Image, degrees: float, x: int = 40, y: int = 40) -> Image:
    """``picture`` in the mount of ``with_poster``, turned ``degrees`` about its centre and hung at (x, y)."""
    h, w = picture.shape[:2]
    mounted = np.full((h + 8, w + 8, 3), 60, np.uint8)
    mounted[1:-1, 1:-1] = 236
    mounted[4 : 4 + h, 4 : 4 + w] = picture
    side = int(np.hypot(h + 8, w + 8)) + 2
    turn = cv2.getRotationMatrix2D(((w + 8) / 2, (h + 8) / 2), degrees, 1.0)
    turn[:, 2] += ((side - w - 8) / 2, (side - h - 8) / 2)
    patch = cv2.warpAffine(mounted, turn, (side, side))
    inside = cv2.warpAffine(np.full((h + 8, w + 8), 255, np.uint8), turn, (side, side)) > 127
    out = room.copy()
    out[y : y + side, x : x + side][inside] = patch[inside]
    return out


@pytest.mark.parametrize("degrees", [5.0, 15.0, -15.0])
def test_a_picture_hung_crooked_is_not_a_second_person(astronaut: Image, grace: Image, degrees: float) -> None:
    """Until face presence version 15 the frame had to be upright: each of these counted two faces."""
    scene = hung_crooked(room_with_candidate(grace), small_face(astronaut), degrees)
    assert len(FacePresenceDetector().faces(scene)) == 1


def test_a_picture_whose_frame_touches_a_shelf_is_not_a_second_person(astronaut: Image, grace: Image) -> None:
    """A line meeting the frame's corner merged with it into one outline once the edges were thickened, so no
    rectangle was left (two faces until face presence version 16, which also reads the edges as found)."""
    scene = with_poster(room_with_candidate(grace), small_face(astronaut))
    cv2.line(scene, (173, 36), (230, 36), (50, 50, 50), 2)  # a shelf from the poster's top right corner
    assert len(FacePresenceDetector().faces(scene)) == 1


def test_a_second_person_without_a_frame_still_counts(astronaut: Image, grace: Image) -> None:
    scene = with_person(room_with_candidate(grace), small_face(astronaut))
    assert len(FacePresenceDetector().faces(scene)) == 2


def test_a_framed_picture_in_a_session_is_not_counted(astronaut: Image, grace: Image) -> None:
    """The same through the pipeline's detector: the candidate tracked, the picture never a second face."""
    scene = with_poster(room_with_candidate(grace), small_face(astronaut))
    signals = FaceAnalysisDetector(identity=None)(frames_of(scene))
    assert signals["face_count"].tolist() == [1] * 10


def outlined(box: tuple[int, int, int, int], rect: tuple[int, int, int, int]) -> tuple[Image, NDArray[np.float32]]:
    """A grey frame with a dark rectangle ``rect`` (x0, y0, x1, y1) drawn around a face ``box``."""
    canvas = np.full((480, 640, 3), 140, np.uint8)
    cv2.rectangle(canvas, rect[:2], rect[2:], (30, 30, 30), 2)
    return canvas, np.array(box, np.float32)


@pytest.mark.parametrize(
    ("box", "rect", "picture"),
    [
        ((120, 100, 160, 140), (80, 70, 200, 220), True),  # ~3 face sizes around a 40 px face: a portrait's frame
        ((20, 100, 60, 140), (-10, 70, 110, 200), False),  # cut by the view's edge: no closed frame
        ((130, 100, 150, 120), (100, 60, 200, 250), False),  # 9.5 face sizes tall: a door or a window
        ((120, 100, 160, 140), (125, 95, 190, 200), False),  # cuts through the face: it does not enclose it
        # a second person's still pasted beside the candidate, letterboxed in the left half (../shared/data
        # session05): 2.5 face sizes, but a third of the view
        ((92, 176, 222, 306), (5, 88, 325, 398), False),
    ],
)
def test_what_counts_as_a_picture_frame(
    box: tuple[int, int, int, int], rect: tuple[int, int, int, int], picture: bool
) -> None:
    frame, face = outlined(box, rect)
    assert framed(frame, face, PictureFrameRule()) is picture


@pytest.mark.parametrize("degrees", [8.0, 15.0, -25.0])
def test_a_crooked_picture_frame_is_still_a_picture_frame(degrees: float) -> None:
    """The portrait's frame of the first case above, turned: hung crooked, or seen by a camera on a tilted lid."""
    canvas = np.full((480, 640, 3), 140, np.uint8)
    corners = cv2.boxPoints(((140.0, 145.0), (120.0, 150.0), degrees)).round().astype(np.int32)
    cv2.polylines(canvas, [corners], True, (30, 30, 30), 2)
    assert framed(canvas, np.array((120, 100, 160, 140), np.float32), PictureFrameRule())


def test_a_framed_picture_is_placed_where_it_hangs(astronaut: Image, grace: Image) -> None:
    """The detector places the picture it did not count (``picture_face_*``), so the flags can know that spot
    once the candidate has left (``pipelines.people.Fixtures``); alone in view, it is the only face found."""
    poster = small_face(astronaut)
    seated = with_poster(room_with_candidate(grace), poster)
    left = with_poster(np.full((480, 640, 3), 115, np.uint8), poster)
    frames = np.stack([seated] * 10 + [left] * 10)
    signals = FaceAnalysisDetector(identity=None)(FrameBatch(frames, np.arange(20, dtype=np.int64) * 200))
    assert signals["face_count"].tolist() == [1] * 20
    assert np.isfinite(signals["picture_face_size_px"][:10]).all(), "placed while the candidate sat in front of it"
    assert np.isnan(signals["picture_face_size_px"][10:]).all(), "alone, nothing is larger: it is not judged"
    for axis in ("x", "y"):
        placed, alone = signals[f"picture_face_{axis}_px"][5], signals[f"face_{axis}_px"][15]
        assert abs(placed - alone) <= 0.1 * signals["face_size_px"][15], f"the same place ({axis})"
    assert 1.0 < signals["picture_face_size_px"][5] / signals["face_size_px"][15] <= Fixtures().alone_scale, (
        "another pass finds it alone, with a smaller box"
    )
    _, alone = fixture_frames(signals, Fixtures())
    assert alone.tolist() == [False] * 10 + [True] * 10, "alone in view, the picture is an empty seat"
