from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.event_log import MAX_DETAIL_CHARS, EventType, ExamEvent, parse_event_log
from ingest.probe import MediaRejected

GOOD: list[tuple[str, list[bytes], list[ExamEvent]]] = [
    ("empty log", [], []),
    ("only blank lines", [b"\n", b"   \r\n", b""], []),
    (
        "detail optional, crlf endings",
        [
            b'{"type": "focus_lost", "t_ms": 0}\r\n',
            b'{"type": "paste", "t_ms": 12, "detail": "42 chars"}\r\n',
        ],
        [ExamEvent(EventType.FOCUS_LOST, 0), ExamEvent(EventType.PASTE, 12, "42 chars")],
    ),
    (
        "equal timestamps are allowed",
        [b'{"type": "copy", "t_ms": 500}\n', b'{"type": "focus_lost", "t_ms": 500}\n'],
        [ExamEvent(EventType.COPY, 500), ExamEvent(EventType.FOCUS_LOST, 500)],
    ),
    (
        "blank lines between events",
        [b'{"type": "tab_switch", "t_ms": 1}\n', b"\n", b'{"type": "other", "t_ms": 2, "detail": null}\n'],
        [ExamEvent(EventType.TAB_SWITCH, 1), ExamEvent(EventType.OTHER, 2)],
    ),
    (
        "utf-8 byte-order mark on the first line",
        [b'\xef\xbb\xbf{"type": "window_resize", "t_ms": 3, "detail": "1280\xc3\x97720"}\n'],
        [ExamEvent(EventType.WINDOW_RESIZE, 3, "1280\u00d7720")],
    ),
    (
        "detail at the limit",
        [b'{"type": "other", "t_ms": 0, "detail": "' + b"x" * MAX_DETAIL_CHARS + b'"}'],
        [ExamEvent(EventType.OTHER, 0, "x" * MAX_DETAIL_CHARS)],
    ),
]

BAD: list[tuple[str, list[bytes], str]] = [
    (
        "bad json",
        [b'{"type": "copy", "t_ms": 1}\n', b'{"type": "copy", t_ms: 2}\n'],
        "line 2: not valid JSON",
    ),
    ("not an object", [b"[1, 2]\n"], "line 1: expected a JSON object, got list"),
    ("unknown type", [b'{"type": "screenshot", "t_ms": 1}\n'], "line 1: unknown type 'screenshot'"),
    ("type not a string", [b'{"type": 3, "t_ms": 1}\n'], "line 1: unknown type 3"),
    ("missing type", [b'{"t_ms": 1}\n'], "line 1: missing 'type'"),
    ("missing t_ms", [b'{"type": "copy"}\n'], "line 1: missing 't_ms'"),
    ("negative t_ms", [b'{"type": "copy", "t_ms": -5}\n'], "line 1: t_ms must be >= 0"),
    ("fractional t_ms", [b'{"type": "copy", "t_ms": 1.5}\n'], "line 1: t_ms must be a whole number"),
    ("t_ms as a string", [b'{"type": "copy", "t_ms": "10"}\n'], "line 1: t_ms must be a whole number"),
    ("t_ms as a boolean", [b'{"type": "copy", "t_ms": true}\n'], "line 1: t_ms must be a whole number"),
    (
        "decreasing timestamps",
        [b'{"type": "copy", "t_ms": 900}\n', b"\n", b'{"type": "paste", "t_ms": 899}\n'],
        "line 3: t_ms 899 is earlier than 900 on line 1",
    ),
    (
        "detail not a string",
        [b'{"type": "copy", "t_ms": 1, "detail": 7}\n'],
        "line 1: detail must be a string",
    ),
    (
        "detail too long",
        [b'{"type": "copy", "t_ms": 1, "detail": "' + b"x" * (MAX_DETAIL_CHARS + 1) + b'"}\n'],
        f"line 1: detail is {MAX_DETAIL_CHARS + 1} characters",
    ),
    ("unknown field", [b'{"type": "copy", "t_ms": 1, "user": "bob"}\n'], "line 1: unknown field 'user'"),
    (
        "not utf-8",
        [b'{"type": "copy", "t_ms": 1}\n', b'{"type": "copy", "t_ms": 2, "detail": "\xff"}\n'],
        "line 2: not UTF-8",
    ),
    ("too many events", [b'{"type": "copy", "t_ms": 1}\n'] * 4, "line 4: more than 3 events"),
]


@pytest.mark.parametrize(("lines", "expected"), [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_good_logs(lines: list[bytes], expected: list[ExamEvent]) -> None:
    assert parse_event_log(lines) == expected


@pytest.mark.parametrize(("lines", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_logs(lines: list[bytes], message: str) -> None:
    with pytest.raises(MediaRejected) as caught:
        parse_event_log(lines, max_events=3)
    assert caught.value.code == "invalid_event_log"
    assert caught.value.message.startswith(message), caught.value.message


def test_reads_an_open_binary_file() -> None:
    log = io.BytesIO(b'{"type": "fullscreen_exit", "t_ms": 10}\n{"type": "fullscreen_enter", "t_ms": 4000}\n')
    assert [e.type for e in parse_event_log(log)] == [EventType.FULLSCREEN_EXIT, EventType.FULLSCREEN_ENTER]


def test_exactly_max_events_is_accepted() -> None:
    assert len(parse_event_log([b'{"type": "copy", "t_ms": 1}\n'] * 3, max_events=3)) == 3


@pytest.mark.parametrize(("t_ms", "detail"), [(-1, None), (0, "x" * (MAX_DETAIL_CHARS + 1))])
def test_event_refuses_invalid_values(t_ms: int, detail: str | None) -> None:
    with pytest.raises(ValueError):
        ExamEvent(EventType.OTHER, t_ms, detail)


events = st.lists(
    st.builds(
        ExamEvent,
        type=st.sampled_from(EventType),
        t_ms=st.integers(min_value=0, max_value=10**10),
        detail=st.none() | st.text(max_size=MAX_DETAIL_CHARS),
    )
).map(lambda found: sorted(found, key=lambda e: e.t_ms))


@given(events)
def test_written_events_read_back(written: list[ExamEvent]) -> None:
    assert parse_event_log(e.to_json_line() for e in written) == written
