from __future__ import annotations

import itertools

import pytest

from core.states import ALLOWED_TRANSITIONS, IllegalTransition, SessionState, check_transition

S = SessionState
HAPPY_PATH = [
    S.CREATED,
    S.UPLOADING,
    S.UPLOADED,
    S.VALIDATED,
    S.QUEUED,
    S.PROCESSING,
    S.PROCESSED,
    S.IN_REVIEW,
    S.REVIEWED,
]


def test_happy_path_is_allowed() -> None:
    for current, target in itertools.pairwise(HAPPY_PATH):
        check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target", "reason", "error"),
    [
        (S.CREATED, S.QUEUED, None, "cannot go from created to queued"),
        (S.UPLOADING, S.PROCESSED, None, "cannot go from uploading to processed"),
        (S.QUEUED, S.QUEUED, None, "cannot go from queued to queued"),
        (S.REJECTED, S.UPLOADING, None, "from rejected it can go to deleted"),
        (S.DELETED, S.UPLOADING, None, "none: it is final"),
        (S.DELETED, S.DELETED, None, "cannot go from deleted to deleted"),
        (S.REVIEWED, S.QUEUED, None, "cannot go from reviewed to queued"),
        (S.UPLOADED, S.REJECTED, None, "needs a reason"),
        (S.PROCESSING, S.FAILED, "", "needs a reason"),
    ],
)
def test_illegal_transitions_raise(current: S, target: S, reason: str | None, error: str) -> None:
    with pytest.raises(IllegalTransition, match=error):
        check_transition(current, target, reason)


@pytest.mark.parametrize("state", [s for s in SessionState if s is not S.DELETED])
def test_every_live_state_can_be_erased(state: S) -> None:
    assert S.DELETED in ALLOWED_TRANSITIONS[state]
    check_transition(state, S.DELETED)


def test_rejected_and_failed_carry_reasons() -> None:
    check_transition(S.UPLOADING, S.REJECTED, "checksum_mismatch")
    check_transition(S.PROCESSING, S.FAILED, "decoder crashed")
    check_transition(S.FAILED, S.QUEUED)
