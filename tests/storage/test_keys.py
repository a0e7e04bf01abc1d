from __future__ import annotations

import pytest

from storage.keys import InvalidIdentifier, SessionPrefix, safe_identifier


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("exam-101", True),
        ("A.b_c-9", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("..", False),
        ("a..b", False),
        (".hidden", False),
        ("-dash-first", False),
        ("../etc/passwd", False),
        ("/absolute", False),
        ("a/b", False),
        ("a\\b", False),
        ("tab\there", False),
        ("new\nline", False),
        ("nul\x00", False),
        ("space here", False),
        ("caf\u00e9", False),  # look-alike Unicode is refused, not normalised
        ("\u0430dmin", False),  # Cyrillic a
    ],
)
def test_safe_identifier(value: str, ok: bool) -> None:
    if ok:
        assert safe_identifier("exam", value) == value
    else:
        with pytest.raises(InvalidIdentifier, match="not a valid identifier"):
            safe_identifier("exam", value)


def test_session_prefix_builds_namespaced_keys() -> None:
    prefix = SessionPrefix("uni-a", "exam-1", "0123abcd")
    assert prefix.prefix == "uni-a/exam-1/0123abcd/"
    assert prefix.key("media", "webcam") == "uni-a/exam-1/0123abcd/media/webcam"


@pytest.mark.parametrize("bad", [("../x", "e", "s"), ("t", "e/../../x", "s"), ("t", "e", "")])
def test_session_prefix_refuses_unsafe_components(bad: tuple[str, str, str]) -> None:
    with pytest.raises(InvalidIdentifier):
        SessionPrefix(*bad)


def test_key_parts_are_validated() -> None:
    with pytest.raises(InvalidIdentifier):
        SessionPrefix("t", "e", "s").key("media", "../../other-tenant")
