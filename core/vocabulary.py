"""Every status and kind that is stored in a column or crosses a stage, as one enum each.

The database keeps the `.value` strings; code compares against these members, never against bare literals,
so a renamed status is a type error rather than a silent mismatch. `SessionState` and its transitions live
in `core.states`.
"""

from __future__ import annotations

from enum import StrEnum


class MediaKind(StrEnum):
    """One uploaded file of a session."""

    WEBCAM = "webcam"
    SCREEN = "screen"
    EVENTS = "events"
    # The candidate's reference face, stored under the candidate (not the session) and reused across exams.
    ENROLMENT_PHOTO = "enrolment_photo"
    ENROLMENT_CLIP = "enrolment_clip"


VIDEO_KINDS = frozenset({MediaKind.WEBCAM, MediaKind.SCREEN})
RECORDING_KINDS = frozenset({MediaKind.WEBCAM, MediaKind.SCREEN, MediaKind.EVENTS})
"""The exam's own files: a session is queued once every one it declared is complete."""
ENROLMENT_KINDS = frozenset({MediaKind.ENROLMENT_PHOTO, MediaKind.ENROLMENT_CLIP})
"""Reference faces: never block the exam; a refused one is rejected alone, the session is not."""


class MediaState(StrEnum):
    PENDING = "pending"  # parts may arrive
    VERIFYING = "verifying"  # one `complete` request assembles and checks it
    COMPLETE = "complete"
    REJECTED = "rejected"


class JobKind(StrEnum):
    PROCESS = "process"
    # Re-segment a processed session's stored signals under its exam's current policy (`pipelines.rescore`):
    # no decoding, and the session's state does not move.
    RESCORE = "rescore"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


OPEN_JOB_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)


class FlagKind(StrEnum):
    """What a flagged time segment says happened."""

    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    LOOKING_AWAY = "looking_away"
    CAMERA_BLOCKED = "camera_blocked"
    PERSON_CHANGED = "person_changed"  # not the person of the session's first stable face track
    IDENTITY_MISMATCH = "identity_mismatch"  # not the enrolled candidate


class ReviewerFlagKind(StrEnum):
    """What a reviewer saw that no detector looks for; only a reviewer adds these, detectors never emit them.

    Kept apart from `FlagKind` so that a phone is not filed as looking_away: the confirm rate of a detector
    kind then measures that detector alone, and reports count these separately (as flags reviewers added).
    An exam policy cannot name them either: there is nothing to tune.
    """

    PHONE = "phone"
    ANOTHER_VOICE = "another_voice"
    NOTES = "notes"  # written or printed notes in view
    OTHER_PERSON = "other_person"  # someone in the room, seen in part or heard, who is not a second face
    OTHER = "other"  # anything else: the flag's note says what


AddedFlagKind = FlagKind | ReviewerFlagKind
"""What a reviewer may add: a detector kind the detectors missed, or a reviewer-only kind."""


def added_flag_kind(value: str) -> AddedFlagKind:
    """A flag's kind, a detector's or a reviewer-only one; a ValueError names every kind there is."""
    if value in {k.value for k in FlagKind}:
        return FlagKind(value)
    if value in {k.value for k in ReviewerFlagKind}:
        return ReviewerFlagKind(value)
    known = ", ".join([*FlagKind, *ReviewerFlagKind])
    raise ValueError(f"unknown flag kind {value!r}; known: {known}")


class FlagSource(StrEnum):
    DETECTOR = "detector"
    REVIEWER = "reviewer"  # a flag a reviewer added; re-processing keeps it


class ReviewPriority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Decision(StrEnum):
    """A reviewer's decision on one flag."""

    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class Outcome(StrEnum):
    """A session's review outcome, in edX's proctoring review vocabulary."""

    CLEAN = "Clean"
    SUSPICIOUS = "Suspicious"
    RULES_VIOLATION = "Rules Violation"
    NOT_REVIEWED = "Not Reviewed"  # technical failure: the recording could not be reviewed


class ReviewStatus(StrEnum):
    """Where a session's review stands (`session_reviews.status`; `NOT_STARTED` has no row)."""

    NOT_STARTED = "not_started"
    AWAITING_SECOND = "awaiting_second"  # a Rules Violation waiting for a second, different reviewer
    FINAL = "final"


class Role(StrEnum):
    REVIEWER = "reviewer"
    OFFICER = "officer"  # integrity officer: audits and reports, and may review
    ADMIN = "admin"


class DeliveryState(StrEnum):
    """A webhook delivery owed to a tenant."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
