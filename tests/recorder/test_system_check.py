"""The candidate's system check on real faces (`proctor.samples`' photos) and on frames it must refuse."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ingest.enrolment import EnrolmentChecks
from ingest.system_check import MAX_JPEG_BYTES, check_camera_frame
from proctor.wiring import enrolment_face_check
from tests.recorder.conftest import SampleFrames, jpeg


@pytest.fixture(scope="module")
def checks() -> EnrolmentChecks:
    return EnrolmentChecks(enrolment_face_check)


def test_the_candidate_alone_passes(sample_frames: SampleFrames, checks: EnrolmentChecks) -> None:
    result = check_camera_frame(jpeg(sample_frames.middle("candidate")), checks)
    assert result.ok and result.problems == []
    assert result.face_size_px is not None and result.face_size_px >= 80


@pytest.mark.parametrize(
    ("scene", "code", "words"),
    [
        ("two people", "multiple_faces", "more than one person"),
        ("cup", "no_face", "can't see your face"),
        ("cat", "no_face", "can't see your face"),
    ],
)
def test_a_scene_without_exactly_one_face_is_refused_in_plain_words(
    sample_frames: SampleFrames, checks: EnrolmentChecks, scene: str, code: str, words: str
) -> None:
    result = check_camera_frame(jpeg(sample_frames.middle(scene)), checks)
    assert not result.ok
    assert [p.code for p in result.problems] == [code]
    assert words in result.problems[0].message and "retry" in result.problems[0].message


def test_a_dark_room_is_refused_as_too_dark(sample_frames: SampleFrames, checks: EnrolmentChecks) -> None:
    dark = (sample_frames.middle("candidate").astype(np.float32) * 0.12).astype(np.uint8)
    result = check_camera_frame(jpeg(dark), checks)
    assert [p.code for p in result.problems] == ["too_dark"]
    assert "too dark" in result.problems[0].message


def test_a_face_far_from_the_camera_is_refused_as_too_small(
    sample_frames: SampleFrames, checks: EnrolmentChecks
) -> None:
    frame = sample_frames.middle("candidate")
    far = np.full_like(frame, 128, dtype=np.uint8)  # the candidate three times further away, in a grey room
    small = cv2.resize(frame, (frame.shape[1] // 3, frame.shape[0] // 3), interpolation=cv2.INTER_AREA)
    y, x = (frame.shape[0] - small.shape[0]) // 2, (frame.shape[1] - small.shape[1]) // 2
    far[y : y + small.shape[0], x : x + small.shape[1]] = small
    result = check_camera_frame(jpeg(far), checks)
    assert [p.code for p in result.problems] == ["face_too_small"]
    assert "Move closer" in result.problems[0].message


def test_a_blurred_picture_is_refused_as_blurred(sample_frames: SampleFrames, checks: EnrolmentChecks) -> None:
    blurred = np.asarray(cv2.GaussianBlur(sample_frames.middle("candidate"), (0, 0), 3.0), np.uint8)
    result = check_camera_frame(jpeg(blurred), checks)
    assert [p.code for p in result.problems] == ["blurred"]


def test_anything_but_a_jpeg_is_refused_without_running_the_face_check(sample_frames: SampleFrames) -> None:
    def never() -> object:
        raise AssertionError("the face check must not be built for a frame that is not a JPEG")

    checks = EnrolmentChecks(never)  # type: ignore[arg-type]
    ok, png = cv2.imencode(".png", sample_frames.middle("candidate"))
    assert ok
    for data in (png.tobytes(), b"\xff\xd8\xff" + bytes(100), bytes(MAX_JPEG_BYTES + 1)):
        result = check_camera_frame(data, checks)
        assert not result.ok and result.problems[0].code in {"not_jpeg", "image_too_large"}
