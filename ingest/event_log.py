"""Validate the exam event log a platform uploads beside the recording (JSON lines).

Reviewers read these events against the video (a paste while a second face is on screen), so a log
with events out of order or of unknown kinds is refused at upload, naming the line, rather than shown
wrong later. Each line is one object: `{"type": ..., "t_ms": ..., "detail": ...}`, where `t_ms` counts
milliseconds from the start of the recording. Blank lines are skipped; line numbers count them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ingest.probe import MediaRejected

MAX_DETAIL_CHARS = 500
MAX_NUMBER_DIGITS = 18  # t_ms fits in a signed 64-bit integer; longer numbers are refused before int() reads them
_FIELDS = frozenset({"type", "t_ms", "detail"})


class EventType(StrEnum):
    FOCUS_LOST = "focus_lost"
    FOCUS_GAINED = "focus_gained"
    TAB_SWITCH = "tab_switch"
    COPY = "copy"
    PASTE = "paste"
    FULLSCREEN_EXIT = "fullscreen_exit"
    FULLSCREEN_ENTER = "fullscreen_enter"
    WINDOW_RESIZE = "window_resize"
    OTHER = "other"


_TYPE_VALUES = frozenset(t.value for t in EventType)
_TYPES = ", ".join(t.value for t in EventType)


@dataclass(frozen=True)
class ExamEvent:
    """One browser event during the exam, at `t_ms` milliseconds into the recording."""

    type: EventType
    t_ms: int
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.t_ms < 0:
            raise ValueError(f"t_ms must be >= 0, got {self.t_ms}")
        if self.detail is not None and len(self.detail) > MAX_DETAIL_CHARS:
            raise ValueError(f"detail must be at most {MAX_DETAIL_CHARS} characters, got {len(self.detail)}")

    def to_json_line(self) -> bytes:
        """The line `parse_event_log` reads back as this event."""
        fields: dict[str, object] = {"type": self.type.value, "t_ms": self.t_ms}
        if self.detail is not None:
            fields["detail"] = self.detail
        return json.dumps(fields, ensure_ascii=False).encode() + b"\n"


def parse_event_log(lines: Iterable[bytes], max_events: int = 100_000) -> list[ExamEvent]:
    """Parse and check a whole log; raise `MediaRejected("invalid_event_log", "line N: ...")` at a fault.

    `lines` may be an open binary file. Equal timestamps are allowed (a copy and a focus change can share
    a millisecond); decreasing ones are not.
    """
    events: list[ExamEvent] = []
    previous_line = 0
    for number, raw in enumerate(lines, start=1):
        try:
            # utf-8-sig on the first line: editors on Windows start files with a byte-order mark.
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid(
                number,
                f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}): write the log as UTF-8",
            ) from None
        if not text.strip():
            continue
        if len(events) == max_events:
            raise _invalid(number, f"more than {max_events} events: send at most {max_events} per session")
        event = _parse_line(number, text)
        if events and event.t_ms < events[-1].t_ms:
            raise _invalid(
                number,
                f"t_ms {event.t_ms} is earlier than {events[-1].t_ms} on line {previous_line}: "
                "write events in time order",
            )
        events.append(event)
        previous_line = number
    return events


class _NumberTooLong(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _bounded_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_NUMBER_DIGITS:
        raise _NumberTooLong(digits)
    return int(literal)


def _parse_line(number: int, text: str) -> ExamEvent:
    try:
        fields = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise _invalid(
            number, f"not valid JSON ({exc.msg} at column {exc.colno}): write one JSON object per line"
        ) from None
    except _NumberTooLong as exc:
        raise _invalid(
            number, f"a number of {exc.digits} digits: t_ms counts milliseconds, at most {MAX_NUMBER_DIGITS} digits"
        ) from None
    except RecursionError:
        raise _invalid(number, "JSON nested too deeply: an event is one flat object of type, t_ms and detail") from None
    if not isinstance(fields, dict):
        raise _invalid(number, f"expected a JSON object, got {type(fields).__name__}")
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise _invalid(number, f"unknown field {unknown[0]!r}: an event has only type, t_ms and detail")
    if "type" not in fields:
        raise _invalid(number, f"missing 'type': use one of {_TYPES}")
    kind = fields["type"]
    if not isinstance(kind, str) or kind not in _TYPE_VALUES:
        raise _invalid(number, f"unknown type {kind!r}: use one of {_TYPES}")
    if "t_ms" not in fields:
        raise _invalid(number, "missing 't_ms': give the milliseconds since the recording started")
    t_ms = fields["t_ms"]
    # bool is an int in Python and 1.5 is a number in JSON; neither is a millisecond count.
    if isinstance(t_ms, bool) or not isinstance(t_ms, int):
        raise _invalid(number, f"t_ms must be a whole number of milliseconds, got {t_ms!r}")
    if t_ms < 0:
        raise _invalid(number, f"t_ms must be >= 0 (milliseconds since the recording started), got {t_ms}")
    detail = fields.get("detail")
    if detail is not None and not isinstance(detail, str):
        raise _invalid(number, f"detail must be a string, got {type(detail).__name__}")
    if detail is not None and len(detail) > MAX_DETAIL_CHARS:
        raise _invalid(number, f"detail is {len(detail)} characters; at most {MAX_DETAIL_CHARS} are allowed")
    return ExamEvent(EventType(kind), t_ms, detail)


def _invalid(number: int, what: str) -> MediaRejected:
    return MediaRejected("invalid_event_log", f"line {number}: {what}")
