"""Reviewer-only flag kinds: a vocabulary of their own, apart from what the detectors emit and tune."""

from __future__ import annotations

import pytest

from core.vocabulary import FlagKind, ReviewerFlagKind, added_flag_kind
from pipelines.segments import ExamPolicy


def test_reviewer_kinds_never_share_a_name_with_a_detector_kind() -> None:
    assert {k.value for k in ReviewerFlagKind} == {"phone", "another_voice", "notes", "other_person", "other"}
    assert not {k.value for k in ReviewerFlagKind} & {k.value for k in FlagKind}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("phone", ReviewerFlagKind.PHONE),
        ("other_person", ReviewerFlagKind.OTHER_PERSON),
        ("looking_away", FlagKind.LOOKING_AWAY),
        ("no_face", FlagKind.NO_FACE),
    ],
)
def test_a_stored_kind_reads_back_as_its_own_enum(value: str, expected: FlagKind | ReviewerFlagKind) -> None:
    parsed = added_flag_kind(value)
    assert parsed is expected and type(parsed) is type(expected)


def test_an_unknown_kind_is_refused_naming_every_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown flag kind 'hair'; known: no_face, .*phone, .*other$"):
        added_flag_kind("hair")


def test_an_exam_policy_cannot_tune_a_kind_no_detector_emits() -> None:
    with pytest.raises(ValueError, match="unknown flag kind 'phone'"):
        ExamPolicy.from_json({"kinds": {"phone": {"min_duration_ms": 1000}}})
