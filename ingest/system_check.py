"""The candidate's system check before an exam: is one still frame from their camera good enough to proctor?

The recorder sends one JPEG from the webcam; the frame is judged by the enrolment's face check
(`ingest.enrolment.EnrolmentChecks`: one face, large enough, lit, sharp), because what makes a reference
photo usable is what makes the recording reviewable. The answer is for the candidate, in plain words: each
problem has a stable `code` for the page and a `message` saying what to change. Nothing is stored: the frame
is checked and forgotten.
"""

from __future__ import annotations

import logging
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict, Field

from ingest.enrolment import UNREADABLE, EnrolmentChecks
from ingest.hashing import MIB
from ingest.probe import MediaRejected
from ingest.schemas import IngestError

log = logging.getLogger(__name__)

MAX_JPEG_BYTES = 2 * MIB
"""The largest frame the check takes: a 1280x720 webcam JPEG is some 100-300 kB."""
_JPEG_START = b"\xff\xd8\xff"

# The enrolment check's refusal codes (`detectors.enrolment`), as the candidate's problem and what to do.
_PROBLEMS: dict[str, tuple[str, str]] = {
    "enrolment_no_face": (
        "no_face",
        "We can't see your face. Sit facing the camera with your whole face in view, uncovered, then retry.",
    ),
    "enrolment_multiple_faces": (
        "multiple_faces",
        "We can see more than one person. Make sure you are alone in front of the camera, then retry.",
    ),
    "enrolment_face_too_small": (
        "face_too_small",
        "Your face is too small in the picture. Move closer to the camera, then retry.",
    ),
    "enrolment_too_dark": (
        "too_dark",
        "Your room is too dark for the camera. Turn on a light in front of you (not behind you), then retry.",
    ),
    "enrolment_blurred": (
        "blurred",
        "The picture is blurred. Clean the camera lens, hold still and let the camera focus, then retry.",
    ),
    UNREADABLE: (
        "not_jpeg",
        "The picture from your camera could not be read. Reload the page and retry; if it happens again, "
        "try another browser.",
    ),
    "unsupported_dimensions": (
        "image_too_large",
        "The picture from your camera is far too large to check. Choose a webcam resolution of 1280x720 or "
        "less, then retry.",
    ),
}
_UNKNOWN = (
    "camera_check_failed",
    "Your camera picture could not be checked. Retry; if it happens again, contact support.",
)


class SystemCheckProblem(BaseModel):
    """One thing the candidate must fix before the exam."""

    model_config = ConfigDict(frozen=True)
    code: str = Field(
        description="no_face, multiple_faces, face_too_small, too_dark, blurred, not_jpeg, image_too_large or "
        "camera_check_failed"
    )
    message: str = Field(description="what to change, in plain words for the candidate")


class SystemCheckResult(BaseModel):
    """The verdict on one camera frame: `ok`, or the problems (the first the check met) to fix."""

    model_config = ConfigDict(frozen=True)
    ok: bool
    problems: list[SystemCheckProblem] = Field(default_factory=list)
    face_size_px: float | None = Field(default=None, description="the face's size when it passed")
    brightness: float | None = Field(default=None, description="the face's mean luma (0..255) when it passed")
    sharpness: float | None = Field(default=None, description="the face's sharpness when it passed")


def check_frame_request(content_type: str | None, body: bytes) -> None:
    """Raise the refusal (`IngestError`) for a request that does not carry one JPEG frame of a sane size."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "image/jpeg":
        raise IngestError(
            415, "unsupported_media_type", f"send the camera frame as image/jpeg, not {media_type or 'nothing'}"
        )
    if not body:
        raise IngestError(422, "empty_frame", "the request has no picture: send one JPEG frame from the camera")
    if len(body) > MAX_JPEG_BYTES:  # the app's guard stops a longer body first; kept for apps without it
        raise IngestError(413, "body_too_large", f"a camera frame may be at most {MAX_JPEG_BYTES} bytes")


def check_camera_frame(jpeg: bytes, checks: EnrolmentChecks) -> SystemCheckResult:
    """Judge one webcam still (a JPEG of at most `MAX_JPEG_BYTES`) with the enrolment's face check."""
    if len(jpeg) > MAX_JPEG_BYTES:
        return _refused("unsupported_dimensions")
    if not jpeg.startswith(_JPEG_START):
        return _refused(UNREADABLE)
    try:
        accepted = checks.check(jpeg, _no_clip)
    except MediaRejected as rejected:
        log.info("system check refused", extra={"code": rejected.code})
        return _refused(rejected.code)
    return SystemCheckResult(
        ok=True,
        face_size_px=round(accepted.face_size_px, 1),
        brightness=round(accepted.brightness, 1),
        sharpness=round(accepted.sharpness, 4),
    )


def _refused(enrolment_code: str) -> SystemCheckResult:
    code, message = _PROBLEMS.get(enrolment_code, _UNKNOWN)
    return SystemCheckResult(ok=False, problems=[SystemCheckProblem(code=code, message=message)])


def _no_clip() -> BinaryIO:
    raise AssertionError("a photo is checked from its bytes: there is no clip to open")
