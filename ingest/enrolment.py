"""Enrolment media on the upload protocol: a candidate's reference photo or short clip, decoded and checked.

They arrive like any other file of a session (declared at registration, resumable checksummed parts,
`complete`), but are stored under the candidate (`core.enrolments.CandidatePrefix`) and judged apart from the
recording: a refused reference rejects that file alone, with its own code (`enrolment_no_face`, ...), and the
session goes on to be queued and reviewed without identity. The platform can register the candidate's next
exam with a better photo.

Decoding is here (OpenCV for photos, PyAV for clips); the face check itself is the detectors' and reaches this
stage as a `FaceCheck` built by the composition root on the first enrolment completed, so the API process
loads OpenCV, ONNX Runtime and the face models only when a platform uses enrolment, and then once.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Protocol

import av
import av.error
import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from core.probes import VideoProbe
from core.states import SessionState
from core.tables import CandidateEnrolment, ExamSession, Media
from core.vocabulary import MediaKind
from ingest.hashing import MIB
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from ingest.records import session_deleted

log = logging.getLogger(__name__)

UNREADABLE = "enrolment_unreadable"
_UNREADABLE_CLIP = frozenset(
    {"not_a_video", "no_video_stream", "truncated_media", "zero_duration", "undecodable_media"}
)

Frame = NDArray[np.uint8]


@dataclass(frozen=True)
class EnrolmentLimits:
    """What an enrolment file may be. A clip's other limits (sizes, frame rates, codecs) are the recording's."""

    max_photo_bytes: int = 10 * MIB
    max_clip_bytes: int = 100 * MIB
    max_clip_s: float = 30.0
    max_photo_pixels: int = 50_000_000
    """A photo's width x height, read from its header before decoding: a small PNG can unpack to gigabytes."""
    clip_frames: int = 8
    """Frames of a clip that are checked and averaged, evenly spread over it."""
    max_side_px: int = 1280
    """Larger photos and frames are shrunk to this long side before the check (faces are measured there)."""

    def __post_init__(self) -> None:
        for name in ("max_photo_bytes", "max_clip_bytes", "max_photo_pixels", "clip_frames", "max_side_px"):
            if getattr(self, name) < 1:
                raise ValueError(f"EnrolmentLimits.{name}: expected >= 1, found {getattr(self, name)}")
        if not self.max_clip_s > 0:
            raise ValueError(f"EnrolmentLimits.max_clip_s: expected > 0, found {self.max_clip_s}")

    def max_bytes(self, kind: str) -> int:
        return self.max_photo_bytes if kind == MediaKind.ENROLMENT_PHOTO else self.max_clip_bytes


class CheckedFace(Protocol):
    """An accepted reference face, as the detectors' enrolment check returns it."""

    @property
    def descriptor(self) -> NDArray[np.float32]: ...
    @property
    def face_size_px(self) -> float: ...
    @property
    def brightness(self) -> float: ...
    @property
    def sharpness(self) -> float: ...
    @property
    def frames_used(self) -> int: ...


FaceCheck = Callable[[Sequence[Frame]], CheckedFace]
"""RGB frames in, the reference face out; raises `MediaRejected` with an `enrolment_*` code to refuse."""


@dataclass(frozen=True)
class AcceptedEnrolment:
    """A checked reference: what the media row shows (`probe`) and the template the candidate keeps."""

    probe: dict[str, Any]
    descriptor: list[float]
    frames: int
    face_size_px: float
    brightness: float
    sharpness: float


class EnrolmentChecks:
    """Decodes enrolment files and runs the face check, built on first use and kept (models load once).

    Checks run one at a time: they are rare, short (~50 ms a frame) and share one set of model sessions.
    """

    def __init__(self, build: Callable[[], FaceCheck], limits: EnrolmentLimits | None = None) -> None:
        self.limits = limits or EnrolmentLimits()
        self._build = build
        self._check: FaceCheck | None = None
        self._lock = threading.Lock()

    def clip_limits(self, recording: ProbeLimits) -> ProbeLimits:
        """A recording's limits (sizes, codecs, the probe's sandbox and pixel budget), for a clip's length."""
        return replace(recording, max_duration_s=self.limits.max_clip_s)

    def first_pass(self, kind: str, reader: BinaryIO, recording: ProbeLimits) -> VideoProbe | bytes:
        """What the hashing pass reads: a clip's probe, or a photo's bytes. Raises `MediaRejected`."""
        if kind == MediaKind.ENROLMENT_PHOTO:
            return reader.read(self.limits.max_photo_bytes + 1)
        try:
            return probe_video(reader, self.clip_limits(recording))
        except MediaRejected as rejected:
            if rejected.code in _UNREADABLE_CLIP:
                raise MediaRejected(UNREADABLE, f"the enrolment clip cannot be read: {rejected.message}") from None
            raise

    def check(self, first: VideoProbe | bytes, open_clip: Callable[[], BinaryIO]) -> AcceptedEnrolment:
        """Decode the photo (``first``'s bytes) or sample the clip (``open_clip`` reads it again) and check the
        face. Raises `MediaRejected` with the refusal."""
        if isinstance(first, bytes):
            frames, probe = [decode_photo(first, self.limits)], {"width": 0, "height": 0}
            probe["height"], probe["width"] = frames[0].shape[:2]
        else:
            with open_clip() as source:
                frames = decode_clip(source, first, self.limits)
            probe = first.to_dict()
        with self._lock:
            if self._check is None:
                self._check = self._build()
            face = self._check(frames)
        quality = {
            "frames": face.frames_used,
            "face_size_px": round(float(face.face_size_px), 1),
            "brightness": round(float(face.brightness), 1),
            "sharpness": round(float(face.sharpness), 4),
        }
        return AcceptedEnrolment(
            probe=probe | {"enrolment": quality},
            descriptor=[float(v) for v in np.asarray(face.descriptor, np.float64).reshape(-1)],
            frames=face.frames_used,
            face_size_px=float(face.face_size_px),
            brightness=float(face.brightness),
            sharpness=float(face.sharpness),
        )


def keep_enrolment(db: Session, session: ExamSession, media: Media, accepted: AcceptedEnrolment) -> None:
    """Record a checked reference as the candidate's enrolment and commit; the session's state does not change.

    Raises `session_deleted` when the session was erased meanwhile (the erasure removed the file).
    """
    db.refresh(session, with_for_update=True)  # an erasure either committed first or waits for this commit
    if session.state == SessionState.DELETED:
        raise session_deleted()
    media.probe = accepted.probe
    db.add(
        CandidateEnrolment(
            tenant_id=session.tenant_id,
            candidate_id=session.candidate_id,
            session_id=session.id,
            kind=media.kind,
            object_key=media.object_key,
            descriptor=accepted.descriptor,
            frames=accepted.frames,
            face_size_px=accepted.face_size_px,
            brightness=accepted.brightness,
            sharpness=accepted.sharpness,
        )
    )
    db.commit()
    # The quality figures only: the descriptor is biometric data and never reaches a log.
    log.info("enrolment accepted", extra={"session_id": session.id, "kind": media.kind, **accepted.probe["enrolment"]})


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame header; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker in (0xFF, 0x01) or 0xD0 <= marker <= 0xD7:  # fill byte, or markers without a length
            at += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and at + 9 <= len(data):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
        at += 2 + length
    return None


def decode_photo(data: bytes, limits: EnrolmentLimits) -> Frame:
    """The photo as RGB (EXIF orientation applied, long side at most ``max_side_px``), or `MediaRejected`."""
    size = image_size(data)
    if size is None:
        raise MediaRejected(UNREADABLE, "the enrolment photo is not a JPEG or PNG image: upload a JPEG or PNG photo")
    width, height = size
    if width * height > limits.max_photo_pixels or min(width, height) < 1:
        raise MediaRejected(
            "unsupported_dimensions",
            f"the enrolment photo is {width}x{height} pixels; at most {limits.max_photo_pixels:,} pixels are "
            "accepted: upload it at a smaller size (a 1280 px photo is plenty)",
        )
    import cv2  # here, not at the top: the API process loads OpenCV only when an enrolment is checked

    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies the EXIF orientation
    if decoded is None:
        raise MediaRejected(UNREADABLE, "the enrolment photo is damaged and cannot be decoded: upload it again")
    rgb = np.asarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), np.uint8)
    h, w = rgb.shape[:2]
    if max(h, w) > limits.max_side_px:
        scale = limits.max_side_px / max(h, w)
        size_out = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = np.asarray(cv2.resize(rgb, size_out, interpolation=cv2.INTER_AREA), np.uint8)
    return np.ascontiguousarray(rgb)


def decode_clip(source: BinaryIO, probe: VideoProbe, limits: EnrolmentLimits) -> list[Frame]:
    """``clip_frames`` RGB frames from the middles of equal slices of the clip, upright, long side at most
    ``max_side_px``; `MediaRejected` when it does not decode."""
    count = limits.clip_frames
    targets = [probe.duration_s * (i + 0.5) / count for i in range(count)]
    width, height = probe.width, probe.height
    if max(width, height) > limits.max_side_px:
        scale = limits.max_side_px / max(width, height)
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
    turns = -(probe.rotation_deg // 90)  # the display rotation is clockwise; np.rot90 turns anticlockwise
    frames: list[Frame] = []
    try:
        with av.open(source, mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            origin: float | None = None
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                origin = float(frame.time) if origin is None else origin
                if float(frame.time) - origin + 1e-6 < targets[len(frames)]:
                    continue
                rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
                frames.append(np.ascontiguousarray(np.rot90(rgb, turns)))
                if len(frames) == count:
                    break
    except (av.error.FFmpegError, IndexError) as exc:
        raise MediaRejected(UNREADABLE, f"the enrolment clip does not decode ({exc}): record it again") from None
    if not frames:
        raise MediaRejected(UNREADABLE, "the enrolment clip decodes to no picture: record it again")
    return frames
