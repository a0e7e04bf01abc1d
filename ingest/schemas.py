"""Request and response bodies of the upload protocol (what the `/v1` OpenAPI spec shows platforms)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from core.probes import VideoProbe
from core.vocabulary import RECORDING_KINDS, MediaKind, MediaState
from storage.keys import InvalidIdentifier, safe_identifier

VIDEO_CONTENT_TYPES = frozenset({"video/mp4", "video/webm", "video/x-matroska", "video/quicktime"})
EVENT_LOG_CONTENT_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines"})
PHOTO_CONTENT_TYPES = frozenset({"image/jpeg", "image/png"})
# A recording's start is checked against fixed bounds, not the clock: it keeps validation pure, and a year 1 or
# 9999 start (which overflows when converted to UTC) is refused as input instead of failing the request.
EARLIEST_START = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_START = datetime(2100, 1, 1, tzinfo=UTC)


def _identifier(field: str, value: str) -> str:
    try:
        return safe_identifier(field, value)
    except InvalidIdentifier as exc:
        raise ValueError(str(exc)) from None


class MediaDeclaration(BaseModel):
    """A file the platform is about to upload, with the size and SHA-256 it must arrive with; or, `streaming`, a
    recording still being made, whose size and SHA-256 are sent when it is complete."""

    model_config = ConfigDict(extra="forbid")
    kind: MediaKind
    size_bytes: int | None = Field(
        default=None, gt=0, description="exact size of the file in bytes; required unless `streaming`, absent with it"
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="lower-case hex SHA-256 of the whole file; required unless `streaming`, absent with it",
    )
    content_type: str = Field(
        description="video/mp4, video/webm, video/x-matroska or video/quicktime for webcam, screen and "
        "enrolment_clip; image/jpeg or image/png for enrolment_photo; application/x-ndjson for events"
    )
    streaming: bool = Field(
        default=False,
        description="upload while recording (webcam, screen and events only): parts of at most the media's "
        "`part_size`, each with `X-Part-SHA256`, and the file's size and SHA-256 in the body of `complete`",
    )

    @model_validator(mode="after")
    def _size_and_checksum_fit_the_mode(self) -> MediaDeclaration:
        if self.streaming:
            if self.kind not in RECORDING_KINDS:
                raise ValueError(
                    f"{self.kind} cannot be streamed: only webcam, screen and events can; declare the finished "
                    "file with its size_bytes and sha256"
                )
            if self.size_bytes is not None or self.sha256 is not None:
                raise ValueError(
                    "a streaming file has no size_bytes or sha256 yet: leave them out and send them to complete"
                )
        elif self.size_bytes is None or self.sha256 is None:
            raise ValueError(
                f"{self.kind} needs size_bytes and sha256 of the whole file, or streaming: true to upload it while "
                "it is recorded"
            )
        return self

    @model_validator(mode="after")
    def _content_type_fits_kind(self) -> MediaDeclaration:
        allowed = {MediaKind.EVENTS: EVENT_LOG_CONTENT_TYPES, MediaKind.ENROLMENT_PHOTO: PHOTO_CONTENT_TYPES}.get(
            self.kind, VIDEO_CONTENT_TYPES
        )
        if self.content_type not in allowed:
            raise ValueError(f"{self.kind} needs content_type in {sorted(allowed)}, got {self.content_type!r}")
        return self


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exam_id: str = Field(description="the platform's exam id: 1-128 of A-Z a-z 0-9 . _ -")
    candidate_id: str = Field(description="a pseudonymous candidate id (never a name or an email)")
    attempt_id: str = Field(description="the platform's attempt id, unique within the exam")
    started_at: AwareDatetime = Field(description="when the recording started, with a time zone (2000 to 2099)")
    exam_title: str = Field(default="", max_length=300)
    media: list[MediaDeclaration] = Field(
        min_length=1,
        max_length=len(MediaKind),
        description="webcam (required), screen, events, and the candidate's enrolment_photo and/or enrolment_clip "
        "(leave both out to reuse the candidate's last accepted enrolment)",
    )

    @field_validator("exam_id", "candidate_id", "attempt_id")
    @classmethod
    def _safe(cls, value: str, info: Any) -> str:
        return _identifier(info.field_name, value)

    @field_validator("started_at")
    @classmethod
    def _plausible_start(cls, value: datetime) -> datetime:
        if not EARLIEST_START <= value < LATEST_START:
            raise ValueError(
                f"started_at must be from {EARLIEST_START:%Y-%m-%d} up to {LATEST_START:%Y-%m-%d} (UTC), got "
                f"{value.isoformat()}: send when the recording started, e.g. 2026-11-20T09:00:00Z"
            )
        return value

    @model_validator(mode="after")
    def _one_webcam(self) -> SessionCreate:
        kinds = [m.kind for m in self.media]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each media kind may appear once, got {kinds}")
        if MediaKind.WEBCAM not in kinds:
            raise ValueError("a session needs its webcam recording: add a media entry with kind 'webcam'")
        return self


class ReasonOut(BaseModel):
    code: str
    message: str


class EnrolmentQualityOut(BaseModel):
    """How an accepted enrolment measured (its face template itself is never returned)."""

    frames: int = Field(description="frames the template averages: 1 for a photo")
    face_size_px: float = Field(description="face size in the checked frame (long side at most 1280 px)")
    brightness: float = Field(description="mean luma of the face, 0..255")
    sharpness: float = Field(description="Laplacian variance over grey variance of the aligned face")


class MediaOut(BaseModel):
    kind: MediaKind
    state: MediaState
    size_bytes: int | None = Field(description="the declared size; for a streaming file None until it is complete")
    sha256: str | None = Field(description="the declared SHA-256; for a streaming file None until it is complete")
    content_type: str
    streaming: bool = Field(default=False, description="uploaded while recording (see `MediaDeclaration`)")
    part_size: int = Field(description="bytes of every part but the last (a streaming file's parts: at most this)")
    part_count: int = Field(
        description="parts of the whole file; for a streaming file not yet complete, parts received"
    )
    probe: VideoProbe | None = None
    events_count: int | None = None
    reason: ReasonOut | None = Field(default=None, description="why this file was rejected")
    enrolment: EnrolmentQualityOut | None = Field(default=None, description="an accepted enrolment's quality")


class SessionOut(BaseModel):
    id: str
    exam_id: str
    candidate_id: str
    attempt_id: str
    started_at: datetime
    state: str
    reason: ReasonOut | None
    duration_s: float | None
    created_at: datetime
    updated_at: datetime
    media: list[MediaOut]


class PartOut(BaseModel):
    part_number: int
    size: int
    etag: str


class PartsOut(BaseModel):
    kind: MediaKind
    part_size: int = Field(description="bytes of every part but the last (a streaming file's parts: at most this)")
    part_count: int | None = Field(description="parts of the whole file; None while a streaming file is not complete")
    received: list[PartOut]
    missing: list[int] = Field(description="parts to send; for a streaming file, the gaps below the highest received")


class CompleteRequest(BaseModel):
    """The finished file, as the client measured it: required for a streaming file, optional (and then equal to
    the declaration) for a declared one."""

    model_config = ConfigDict(extra="forbid")
    size_bytes: int = Field(gt=0, description="exact size of the whole file in bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256 of the whole file")


class UploadTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_s: int | None = Field(
        default=None, ge=1, description="seconds the token works; capped by the server (default: its cap, 4 h)"
    )

    @field_validator("ttl_s", mode="before")
    @classmethod
    def _seconds_not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON `true` would otherwise be read as 1 second
            raise ValueError("ttl_s is a number of seconds, not true or false")
        return value


class UploadTokenOut(BaseModel):
    """A bearer token for one session's uploads, for a browser that must never hold the tenant's API key."""

    token: str = Field(
        description="send as 'Authorization: Bearer put_...'; it opens only GET /v1/sessions/{id} and that "
        "session's POST .../media (an enrolment file), GET .../media/{kind}/parts, PUT .../media/{kind}/parts/{n} "
        "and POST .../media/{kind}/complete"
    )
    session_id: str
    expires_at: datetime


class PresignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part_numbers: list[int] = Field(min_length=1, max_length=1000)


class PresignedPart(BaseModel):
    part_number: int
    url: str
    method: Literal["PUT"] = "PUT"
    expires_at: datetime


class PresignOut(BaseModel):
    parts: list[PresignedPart]


class Problem(BaseModel):
    """RFC 9457 problem details, plus `code`, the stable machine-readable reason."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    details: dict[str, Any] | None = None


class IngestError(Exception):
    """A refusal that the API turns into a problem response; `code` is stable, `message` says what to do."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def problem(self) -> Problem:
        return Problem(
            type=f"urn:proctor:error:{self.code}",
            title=self.code.replace("_", " "),
            status=self.status,
            code=self.code,
            detail=self.message,
            details=self.details,
        )
