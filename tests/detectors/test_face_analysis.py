"""Presence and gaze from one face mesh track and the detections it needs: the two detectors' signals when
it detects on every frame, the same counts a second late at most when it tracks."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from detectors import (
    SIGNAL_COLUMNS,
    FaceAnalysisDetector,
    FacePresenceConfig,
    FacePresenceDetector,
    FrameBatch,
    GazeConfig,
    GazeDetector,
    Signals,
)
from detectors.face_analysis import DESCRIPTOR_COLUMNS
from detectors.identity import IdentityConfig, descriptor_distance

from .conftest import ASTRONAUT_BOX, GRACE_BOX, Image, face_crop, paste


def candidate(astronaut: Image, dx: int = 0) -> Image:
    canvas = np.full((480, 640, 3), 110, np.uint8)
    paste(canvas, face_crop(astronaut, ASTRONAUT_BOX), 40 + dx, 60, 330)
    return canvas


def with_far_face(canvas: Image, grace: Image) -> Image:
    out = canvas.copy()
    paste(out, face_crop(grace, GRACE_BOX, margin=0.3), 480, 120, 90)  # ~53 px: only the full-range pass finds it
    return out


@pytest.fixture(scope="module")
def analysis() -> FaceAnalysisDetector:
    return FaceAnalysisDetector()


def test_signals_match_presence_and_gaze_run_separately(astronaut: Image, grace: Image, no_face: Image) -> None:
    two = np.full((480, 640, 3), 90, np.uint8)
    paste(two, face_crop(astronaut, ASTRONAUT_BOX), 20, 100, 280)
    paste(two, face_crop(grace, GRACE_BOX), 340, 80, 280)
    nothing = np.ascontiguousarray(
        np.pad(no_face, ((0, max(0, 480 - no_face.shape[0])), (0, max(0, 640 - no_face.shape[1])), (0, 0)))[:480, :640]
    )
    frames = [candidate(astronaut), candidate(astronaut, 8), two, nothing, with_far_face(candidate(astronaut), grace)]
    batch = FrameBatch(np.stack(frames), np.arange(len(frames), dtype=np.int64) * 200)
    combined = FaceAnalysisDetector(gaze=GazeConfig(track=False))(batch)
    separate = Signals.merge([FacePresenceDetector()(batch), GazeDetector(GazeConfig(track=False))(batch)])
    assert set(combined.columns) == set(SIGNAL_COLUMNS["face_analysis"])
    assert set(separate.columns) == set(combined.columns) - set(DESCRIPTOR_COLUMNS)
    for name in separate.columns:
        np.testing.assert_allclose(combined[name], separate[name], equal_nan=True, err_msg=name)
    # The far face shows up at 800 ms, after this second's full-range pass (0 ms): seen from the next one on.
    assert combined["face_count"].tolist() == [1, 1, 2, 0, 1]
    assert np.isfinite(combined["head_yaw_deg"]).tolist() == [True, True, True, False, True]


def test_models_are_loaded_once(analysis: FaceAnalysisDetector) -> None:
    assert analysis.presence.short is analysis.gaze.detector
    assert analysis.presence.mesh is analysis.gaze.mesh


def with_second_face(canvas: Image, grace: Image) -> Image:
    out = canvas.copy()
    paste(out, face_crop(grace, GRACE_BOX), 400, 100, 220)  # beside the candidate, large enough for the short range
    return out


def count_short_range_passes(analysis: FaceAnalysisDetector, batch: FrameBatch) -> tuple[Signals, int]:
    passes = 0
    detect = analysis.presence.short.detect

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal passes
        passes += 1
        return detect(*args, **kwargs)  # type: ignore[arg-type]

    analysis.presence.short.detect = counted  # type: ignore[method-assign]
    try:
        return analysis(batch), passes
    finally:
        del analysis.presence.short.detect


def test_while_the_mesh_tracks_the_short_range_pass_runs_once_a_second(
    analysis: FaceAnalysisDetector, astronaut: Image, grace: Image
) -> None:
    near = candidate(astronaut)
    two = with_second_face(near, grace)
    frames = [near, candidate(astronaut, 8), two, two, two, two, near, near]
    batch = FrameBatch(np.stack(frames), np.arange(len(frames), dtype=np.int64) * 200)
    every_frame = FaceAnalysisDetector(gaze=GazeConfig(track=False))
    assert every_frame(batch)["face_count"].tolist() == [1, 1, 2, 2, 2, 2, 1, 1]
    signals, passes = count_short_range_passes(analysis, batch)
    # Passes at 0 and 1000 ms: the second face is counted from 1 s, and carried until the next pass at 2 s.
    assert passes == 2
    assert signals["face_count"].tolist() == [1, 1, 1, 1, 1, 2, 2, 2]
    assert np.isfinite(signals["head_yaw_deg"]).all()
    # The tracked face keeps its short-range detection's score (frame 0's is the full-range pass's) and moves
    # with the mesh.
    assert len(set(signals["face_score_max"][1:5].tolist())) == 1
    assert signals["face_cx"][1] > signals["face_cx"][0]


def test_a_candidate_who_leaves_ends_the_track_at_once(analysis: FaceAnalysisDetector, astronaut: Image) -> None:
    near = candidate(astronaut)
    empty = np.full_like(near, 110)
    batch = FrameBatch(np.stack([near, near, empty, empty, near, near]), np.arange(6, dtype=np.int64) * 200)
    signals, passes = count_short_range_passes(analysis, batch)
    assert signals["face_count"].tolist() == [1, 1, 0, 0, 1, 1]
    assert passes == 5  # the first frame, the two empty ones (track lost), the return, the next second (1 s)


def test_a_candidate_too_small_for_the_short_range_model_has_a_head_pose(
    analysis: FaceAnalysisDetector, astronaut: Image
) -> None:
    """A face of ~110 px in 1280x720 (a candidate leaning back from an HD webcam) is under the short-range
    model's reach there; the track starts on the full-range pass's face, and reads the head as the same face
    does at that size in 640x480, where the short-range model finds it."""
    crop = face_crop(astronaut, ASTRONAUT_BOX)
    hd = np.full((720, 1280, 3), 110, np.uint8)
    paste(hd, crop, 520, 200, 240)
    vga = np.full((480, 640, 3), 110, np.uint8)
    paste(vga, crop, 200, 120, 240)
    times = np.arange(6, dtype=np.int64) * 200
    assert not len(analysis.presence.detect_short(hd)), "the short-range model must not find the HD face"
    small = analysis(FrameBatch(np.stack([hd] * 6), times))
    usual = analysis(FrameBatch(np.stack([vga] * 6), times))
    assert small["face_count"].tolist() == [1] * 6
    for column in ("head_yaw_deg", "head_pitch_deg"):
        assert np.isfinite(small[column]).all(), column
        np.testing.assert_allclose(small[column], usual[column], atol=3.0, err_msg=column)


def test_a_small_face_the_mesh_cannot_read_is_still_counted_between_full_range_passes(astronaut: Image) -> None:
    """The gaze path's mesh refuses the HD face the full-range pass found (as it does a head tilted far back):
    no track starts on it, and face presence counts it from its own pass and carries it to the frames between."""
    hd = np.full((720, 1280, 3), 110, np.uint8)
    paste(hd, face_crop(astronaut, ASTRONAUT_BOX), 520, 200, 240)
    analysis = FaceAnalysisDetector()
    mesh = analysis.gaze.mesh
    analysis.gaze.mesh = lambda frame, roi: replace(mesh(frame, roi), score=0.0)  # type: ignore[method-assign]
    signals = analysis(FrameBatch(np.stack([hd] * 6), np.arange(6, dtype=np.int64) * 200))
    assert signals["face_count"].tolist() == [1] * 6
    assert not np.isfinite(signals["head_yaw_deg"]).any()


@pytest.mark.parametrize(
    ("every_ms", "counts", "checked"),
    [
        (1000, [2, 2, 2, 2, 2, 1], [1, 0, 0, 0, 0, 1]),  # the far face is carried until the next full-range pass
        (0, [2, 2, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]),
    ],
)
def test_far_faces_are_carried_between_full_range_passes(
    astronaut: Image, grace: Image, every_ms: int, counts: list[int], checked: list[int]
) -> None:
    near = candidate(astronaut)
    far = with_far_face(near, grace)
    batch = FrameBatch(np.stack([far, far, near, near, near, near]), np.arange(6, dtype=np.int64) * 200)
    signals = FacePresenceDetector(FacePresenceConfig(full_range_every_ms=every_ms, tiled=False))(batch)
    assert signals["face_count"].tolist() == counts
    assert signals["small_face_checked"].tolist() == checked


def test_tiled_small_faces_are_carried_while_still_there(astronaut: Image, grace: Image) -> None:
    """The tiled pass runs on the first frame only; its far face is carried while the face mesh still sees it."""
    near = candidate(astronaut, dx=0)
    far = with_far_face(near, grace)
    config = FacePresenceConfig(full_range=False, tile_every_ms=2000)
    stays = FrameBatch(np.stack([far] * 6), np.arange(6, dtype=np.int64) * 200)
    assert FacePresenceDetector(config)(stays)["face_count"].tolist() == [2, 2, 2, 2, 2, 2]
    leaves = FrameBatch(np.stack([far, far, near, near, far, far]), np.arange(6, dtype=np.int64) * 200)
    # Gone at 400 ms: not carried on; back at 800 ms: found again only by the next tiled pass, at 2 s.
    assert FacePresenceDetector(config)(leaves)["face_count"].tolist() == [2, 2, 1, 1, 1, 1]


def test_a_candidate_who_leaves_is_not_carried(astronaut: Image) -> None:
    near = candidate(astronaut)
    empty = np.full_like(near, 110)
    batch = FrameBatch(np.stack([near, empty, empty, near]), np.arange(4, dtype=np.int64) * 200)
    signals = FacePresenceDetector(FacePresenceConfig(full_range_every_ms=1000))(batch)
    assert signals["face_count"].tolist() == [1, 0, 0, 1]
    assert signals["small_face_checked"].tolist() == [1, 0, 0, 0]


def test_short_detections_must_match_the_batch(astronaut: Image) -> None:
    batch = FrameBatch(np.stack([candidate(astronaut)] * 2), np.array([0, 200]))
    with pytest.raises(ValueError, match=r"expected one detection per frame \(2\), found 0"):
        FacePresenceDetector().detect(batch, [])


def test_a_blurred_face_leaves_its_sample_to_the_next_clear_one(
    analysis: FaceAnalysisDetector, astronaut: Image
) -> None:
    """The track starts on a motion-blurred frame, whose chip has too little detail to compare: the next clear face
    of the same 5 s is embedded instead. Before, the blurred frame spent the track's start and the 5 s bucket, so
    those 5 s had no identity sample at all (a 320x240 camera lost whole stretches that way)."""
    sharp = candidate(astronaut)
    blurred = np.asarray(cv2.GaussianBlur(sharp, (0, 0), 3), np.uint8)
    signals = analysis(FrameBatch(np.stack([blurred, sharp, sharp, sharp]), np.arange(4, dtype=np.int64) * 200))
    assert np.isfinite(signals[DESCRIPTOR_COLUMNS[0]]).tolist() == [False, True, False, False]


def test_a_face_too_dark_to_show_its_colour_is_lifted_and_compared(
    analysis: FaceAnalysisDetector, astronaut: Image
) -> None:
    """A face in deep shadow beside a bright window (the frame is not dark, so it is not lifted): its chip's colour
    spread reads 6, under the gate that keeps greyscale pictures out. Lifted as a dark frame is, it shows its
    colour and is embedded, close to the same face in good light; the same shadow in greyscale stays out. Before,
    the darkest-skinned person of the development set lost most of his samples this way, backlit or at gamma 0.4."""
    lit = candidate(astronaut)
    shade = (lit.astype(np.float32) * 0.1).astype(np.uint8)
    shade[:, 400:] = lit[:, 400:]
    grey = np.repeat(cv2.cvtColor(shade, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)

    def descriptor(image: Image) -> NDArray[np.float64]:
        signals = analysis(FrameBatch(np.stack([image] * 3), np.arange(3, dtype=np.int64) * 200))
        return np.array([signals[c][0] for c in DESCRIPTOR_COLUMNS])

    dark, bright = descriptor(shade), descriptor(lit)
    assert np.isfinite(dark).all() and np.isfinite(bright).all()
    assert float(descriptor_distance(dark, bright)) < IdentityConfig().match_distance
    assert np.isnan(descriptor(grey)).all()
