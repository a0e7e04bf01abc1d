"""The exam policy's parser and validator, and the comparison of two scorings that previews and re-scoring share:
pure functions, tables of cases."""

from __future__ import annotations

from typing import Any

import pytest

from core.exam_policy import ExamPolicy, PolicyInvalid
from core.rescoring import FlagSpan, KindChange, NotRescored, changes_per_kind, diff_flags, why_not_rescored
from core.vocabulary import FlagKind


@pytest.mark.parametrize(
    ("sent", "field", "allowed"),
    [
        ({"sensitivity": 0}, "sensitivity", "within [0.1, 10]"),
        ({"sensitivity": "high"}, "sensitivity", "within [0.1, 10]"),
        ({"sensitivity": True}, "sensitivity", "within [0.1, 10]"),
        ({"kinds": {"no_face": {"min_duration_ms": -1}}}, "kinds.no_face.min_duration_ms", ">= 0 and <= 3600000"),
        ({"kinds": {"no_face": {"min_duration_ms": 1.5}}}, "kinds.no_face.min_duration_ms", "whole number"),
        ({"kinds": {"looking_away": {"enter": 0.2, "exit": 0.4}}}, "kinds.looking_away.exit", "<= enter"),
        ({"kinds": {"looking_away": {"weight": 2}}}, "kinds.looking_away.weight", "within [0, 1]"),
        ({"kinds": {"camera_blocked": {"enabled": "yes"}}}, "kinds.camera_blocked.enabled", "true or false"),
        ({"kinds": {"phone": {}}}, "kinds", "unknown flag kind 'phone'; known: no_face"),
        ({"kinds": {"no_face": {"threshold": 1}}}, "kinds.no_face", "allowed: enabled, enter, exit"),
        ({"kinds": {"no_face": 3}}, "kinds.no_face", "must be an object"),
        ({"kinds": []}, "kinds", "must be an object of flag kind"),
        ({"looking_away": {"yaw_deg": 0}}, "looking_away.yaw_deg", "> 0"),
        ({"looking_away": {"roll_deg": 10}}, "looking_away", "allowed: yaw_deg, pitch_deg, gaze_h"),
        ({"allowed_aids": 7}, "allowed_aids", "text of at most 2000"),
        ({"allowed_aids": "x" * 2001}, "allowed_aids", "text of at most 2000"),
        ({"strictness": 3}, "policy", "unknown policy fields ['strictness']"),
    ],
)
def test_a_policy_that_cannot_be_applied_names_the_field_and_what_it_allows(
    sent: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(PolicyInvalid) as refused:
        ExamPolicy.from_json(sent)
    assert refused.value.field == field
    assert str(refused.value).startswith(field) and allowed in str(refused.value)


@pytest.mark.parametrize(
    ("sent", "kind", "expected"),
    [
        ({}, FlagKind.NO_FACE, {"enabled": True, "min_duration_ms": 3000}),
        ({"kinds": {"no_face": {"enabled": False}}}, FlagKind.NO_FACE, {"enabled": False, "min_duration_ms": 3000}),
        ({"kinds": {"no_face": {"min_duration_ms": 5000.0}}}, FlagKind.NO_FACE, {"min_duration_ms": 5000}),
        (
            {"sensitivity": 2, "kinds": {"no_face": {"min_duration_ms": 5000}}},
            FlagKind.NO_FACE,
            {"min_duration_ms": 2500},
        ),
        ({"kinds": {"multiple_faces": {"weight": 0}}}, FlagKind.MULTIPLE_FACES, {"weight": 0.0, "enter": 0.5}),
    ],
)
def test_a_kind_keeps_its_own_defaults_for_what_is_left_out(
    sent: dict[str, Any], kind: FlagKind, expected: dict[str, Any]
) -> None:
    applied = ExamPolicy.from_json(sent).for_kind(kind)
    assert {name: getattr(applied, name) for name in expected} == expected


def test_a_policy_round_trips_with_its_allowed_aids_and_an_accommodation_turns_kinds_off() -> None:
    policy = ExamPolicy.from_json(
        {"sensitivity": 1.5, "looking_away": {"pitch_deg": 35}, "allowed_aids": "  one sheet of notes  "}
    )
    assert policy.allowed_aids == "one sheet of notes"
    assert ExamPolicy.from_json(policy.to_json()) == policy
    accommodated = policy.without([FlagKind.LOOKING_AWAY])
    assert not accommodated.kinds[FlagKind.LOOKING_AWAY].enabled and accommodated.kinds[FlagKind.NO_FACE].enabled
    assert policy.kinds[FlagKind.LOOKING_AWAY].enabled, "the exam's own policy is unchanged"
    assert policy.without([]) is policy


A = FlagSpan("no_face", 1000, 4000)
B = FlagSpan("no_face", 9000, 12000)
C = FlagSpan("multiple_faces", 1000, 4000)
A_WIDER = FlagSpan("no_face", 800, 4000)


@pytest.mark.parametrize(
    ("before", "after", "kept", "added", "removed"),
    [
        ([A, B], [A, B], [A, B], [], []),
        ([A, B], [B], [B], [], [A]),  # a longer minimum drops A; B and its decision stay
        ([B], [A, B], [B], [A], []),
        ([A], [A_WIDER], [], [A_WIDER], [A]),  # moved edges: another flag, decided afresh
        ([A], [C], [], [C], [A]),  # same span, another kind
        ([A, A], [A], [A], [], [A]),  # a span flagged twice counts twice
        ([], [], [], [], []),
    ],
)
def test_a_flag_survives_a_rescoring_only_with_its_kind_and_span(
    before: list[FlagSpan], after: list[FlagSpan], kept: list[FlagSpan], added: list[FlagSpan], removed: list[FlagSpan]
) -> None:
    diff = diff_flags(before, after)
    assert (list(diff.kept), list(diff.added), list(diff.removed)) == (sorted(kept), sorted(added), sorted(removed))
    assert diff.changed == bool(added or removed)


def test_the_preview_counts_flags_per_kind_over_sessions() -> None:
    table = changes_per_kind([diff_flags([A, B], [B]), diff_flags([C], [C, A_WIDER])])
    assert [k.kind for k in table] == [k.value for k in FlagKind], "every detector kind, in one order"
    by_kind = {k.kind: k for k in table}
    assert by_kind["no_face"] == KindChange("no_face", before=2, after=2, added=1, removed=1)
    assert by_kind["multiple_faces"] == KindChange("multiple_faces", before=1, after=1, added=0, removed=0)
    assert by_kind["looking_away"] == KindChange("looking_away", 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("state", "review", "expected"),
    [
        ("processed", None, None),
        ("in_review", None, None),
        ("reviewed", "final", NotRescored.FINAL),
        ("in_review", "final", NotRescored.FINAL),
        ("in_review", "awaiting_second", NotRescored.AWAITING_SECOND),
        ("processing", None, NotRescored.NOT_PROCESSED),
        ("queued", None, NotRescored.NOT_PROCESSED),
        ("deleted", None, NotRescored.NOT_PROCESSED),
    ],
)
def test_only_sessions_without_an_outcome_set_are_rescored(
    state: str, review: str | None, expected: NotRescored | None
) -> None:
    assert why_not_rescored(state, review) == expected
    if expected is NotRescored.FINAL:
        assert expected.value == "final (reopen to re-score)"
