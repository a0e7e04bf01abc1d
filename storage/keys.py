"""Object keys: `tenant/exam/session/...`, built only from identifiers that passed `safe_identifier`.

Names that come from outside (exam ids, attempt ids, file names) never reach a key unchecked: a key is the
only thing that decides which tenant's data an object is, so `..`, slashes, absolute paths, control
characters and look-alike Unicode are refused rather than cleaned up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class InvalidIdentifier(ValueError):
    """An external name is not safe to use as a storage key component."""

    def __init__(self, field: str, value: str) -> None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        super().__init__(
            f"{field} {shown!r} is not a valid identifier: use 1-128 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no slashes, no '..', no spaces or control characters)"
        )
        self.field = field


def safe_identifier(field: str, value: str) -> str:
    """Return `value` unchanged if it can be a key component, else raise `InvalidIdentifier`."""
    if not _IDENTIFIER.fullmatch(value) or ".." in value:
        raise InvalidIdentifier(field, value)
    return value


@dataclass(frozen=True)
class SessionPrefix:
    """Where one exam session's objects live. Every component is validated on construction."""

    tenant: str
    exam: str
    session: str

    def __post_init__(self) -> None:
        safe_identifier("tenant", self.tenant)
        safe_identifier("exam", self.exam)
        safe_identifier("session", self.session)

    @property
    def prefix(self) -> str:
        return f"{self.tenant}/{self.exam}/{self.session}/"

    def key(self, *parts: str) -> str:
        """A key under this session, e.g. `key("media", "webcam")`; each part is validated."""
        if not parts:
            raise ValueError("key() needs at least one part under the session prefix")
        return self.prefix + "/".join(safe_identifier("key part", p) for p in parts)

    def seekable_key(self, kind: str) -> str:
        """Where the pipeline stores a seekable copy of the `kind` recording (`pipelines.remux`): derived from the
        upload, never in its place, and under this prefix, so erasing the session removes it."""
        return self.key("derived", "seekable", kind)
