"""The exam rules an Open edX course team can choose, and the flagging policy each set of rules becomes.

edX stores an exam's rules as `{rule key: true | false}` and shows the provider's human text for each key
(`GET /openedx/api/v1/config/`). A rule left out, or false, keeps the default: a closed-book exam, one
screen, the candidate alone, webcam only. The policy is written in the JSON shape that
`pipelines.segments.ExamPolicy.from_json` reads (this package does not import the pipelines):

- `allow_notes`: paper notes on the desk. Reading them tilts the head down, so looking-away tolerates a
  pitch of 35 degrees (the detectors' default is 20) before it counts a glance as away.
- `allow_multiple_monitors`: a second screen beside the first, so a yaw of 45 degrees (default 25).
- `allow_other_people`: someone else may be in the room (a child, an invigilator). Multiple-faces flags
  are still found and shown to the reviewer, who can see who was there, but weigh nothing in the session's
  risk score (weight 0): such sessions are not pushed up the review queue for it.
- `record_screen`: not a flagging rule; the recorder also records the screen (see `record_screen`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ingest.schemas import IngestError

ALLOW_NOTES: Final = "allow_notes"
ALLOW_MULTIPLE_MONITORS: Final = "allow_multiple_monitors"
ALLOW_OTHER_PEOPLE: Final = "allow_other_people"
RECORD_SCREEN: Final = "record_screen"
RULE_KEYS: Final = (ALLOW_NOTES, ALLOW_MULTIPLE_MONITORS, ALLOW_OTHER_PEOPLE, RECORD_SCREEN)

NOTES_PITCH_DEG: Final = 35.0
MONITORS_YAW_DEG: Final = 45.0


def normalised_rules(rules: Mapping[str, Any] | None) -> dict[str, bool]:
    """The rules we support, each true or false; keys we do not know are dropped (edX may send its own).

    Raises `IngestError` 422 `edx_rule_invalid` when a known rule is not a boolean.
    """
    chosen: dict[str, bool] = {}
    for key in RULE_KEYS:
        value = (rules or {}).get(key, False)
        if not isinstance(value, bool):
            raise IngestError(
                422, "edx_rule_invalid", f"rule {key!r} must be true or false, got {value!r}", {"rule": key}
            )
        chosen[key] = value
    return chosen


def policy_for(rules: Mapping[str, bool]) -> dict[str, Any]:
    """The exam policy (`ExamPolicy.to_json()`'s shape) these rules call for; no rule: the defaults."""
    looking_away: dict[str, float] = {}
    kinds: dict[str, dict[str, Any]] = {}
    if rules.get(ALLOW_NOTES):
        looking_away["pitch_deg"] = NOTES_PITCH_DEG
    if rules.get(ALLOW_MULTIPLE_MONITORS):
        looking_away["yaw_deg"] = MONITORS_YAW_DEG
    if rules.get(ALLOW_OTHER_PEOPLE):
        kinds["multiple_faces"] = {"weight": 0.0}
    return {"sensitivity": 1.0, "kinds": kinds, "looking_away": looking_away}


def record_screen(rules: Mapping[str, Any]) -> bool:
    return bool(rules.get(RECORD_SCREEN))
