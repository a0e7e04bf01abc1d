"""The session state machine. Every state change goes through `check_transition`, so an illegal one raises.

created → uploading → uploaded → validated → queued → processing → processed → in_review → reviewed
rejected (bad upload, with a reason) from created / uploading / uploaded
failed (processing gave up, with a reason) from queued / processing; a failed session can be queued again
deleted (recordings erased) from any state but deleted
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    CREATED = "created"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    VALIDATED = "validated"
    QUEUED = "queued"
    PROCESSING = "processing"
    PROCESSED = "processed"
    IN_REVIEW = "in_review"
    REVIEWED = "reviewed"
    REJECTED = "rejected"
    FAILED = "failed"
    DELETED = "deleted"


S = SessionState
_FORWARD: dict[SessionState, frozenset[SessionState]] = {
    S.CREATED: frozenset({S.UPLOADING, S.REJECTED}),
    S.UPLOADING: frozenset({S.UPLOADED, S.REJECTED}),
    S.UPLOADED: frozenset({S.VALIDATED, S.REJECTED}),
    S.VALIDATED: frozenset({S.QUEUED}),
    # queued → queued is not allowed: enqueueing twice is a bug, not a retry.
    S.QUEUED: frozenset({S.PROCESSING, S.FAILED}),
    # processing → queued: the job is retried after a lost worker or a transient failure.
    S.PROCESSING: frozenset({S.PROCESSED, S.QUEUED, S.FAILED}),
    # processed → queued: re-run with a new pipeline version.
    S.PROCESSED: frozenset({S.IN_REVIEW, S.QUEUED}),
    S.IN_REVIEW: frozenset({S.REVIEWED, S.PROCESSED}),
    S.REVIEWED: frozenset({S.IN_REVIEW}),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),
    S.DELETED: frozenset(),
}
# Erasure under the retention policy or on the platform's request is possible from every live state.
ALLOWED_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    state: targets if state is S.DELETED else targets | {S.DELETED} for state, targets in _FORWARD.items()
}

NEEDS_REASON = frozenset({S.REJECTED, S.FAILED})


class IllegalTransition(ValueError):
    """A state change the machine does not allow; the message lists what is allowed."""


def check_transition(current: SessionState, target: SessionState, reason: str | None = None) -> None:
    allowed = ALLOWED_TRANSITIONS[current]
    if target not in allowed:
        options = ", ".join(sorted(allowed)) or "none: it is final"
        raise IllegalTransition(
            f"a session cannot go from {current} to {target}; from {current} it can go to {options}"
        )
    if target in NEEDS_REASON and not reason:
        raise IllegalTransition(f"a session moving to {target} needs a reason")
