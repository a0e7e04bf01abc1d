"""Refused requests in the audit trail, with a bound on how many entries a flood of them can write.

What is refused: in the review UI, a 403 (a role, a tenant or a scope that does not allow it, the four-eyes
rule) or a 404 on a session, exam or file the user may not see, and a form whose CSRF token is wrong; on the
platform API (and the Open edX routes mounted beside it), every 401 and 403 (no, a bad or a revoked key, an upload
token that is invalid, expired or of another session, a quota). The apps' exception handlers, the one place
where these refusals become responses, hand each to `note_refusal`; nothing is recorded where they are raised.
A visitor who is simply not signed in is sent to the login page and is not recorded, and a failed sign-in is
audited by the login form itself (`login_failed`).

An entry holds the method, the path (never the query string, which may carry a signed link), the status, the
problem code, the signed-in user or, on the API, which kind of credential was shown and an API key's prefix
(stored in clear beside the key, `core.tenants`), and the client's address. Never a key's secret, a token, a
password or a cookie.

The bound: refusals are counted per (client address, problem code) in windows of `window_s` (60 s). The first
refusal of a window is written at once, in full (`refused`); the repeats within it are only counted, and when
the window has closed one entry says how many there were, between which times, the last path and who
(`refused_repeated`, at most `MAX_ACTORS` of them). So an address hammering 404s writes two entries a minute,
not one per request, and an officer still sees the first attempt in full and how hard it went on. At most
`max_tracked` keys (256) are counted at once; refusals from further addresses, while that many are open, share
one window per code (its summary has no address), so even a flood from many addresses writes at most about
2 x (256 + the number of codes) entries a window. We count rather than sample or drop: a dropped entry would
hide how large an attack was, and an entry per request would let anyone who can reach the server grow the
append-only table, which nothing may prune, without limit.

A window's summary is written with the next refusal after it closes, or when the app shuts down. The counts are
kept in memory, per process (like the sign-in limits, `review_ui.login_limits`); writing them never delays or
changes the refusal the client gets, and a database that cannot take them is logged, not raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import utcnow
from review_ui.lifespan import close_on_shutdown

log = logging.getLogger(__name__)

WINDOW_S: Final = 60.0
MAX_TRACKED: Final = 256
MAX_ACTORS: Final = 5
MAX_PATH: Final = 300
SUMMARY_ACTOR: Final = "system:refusal_audit"
_OTHER_ADDRESSES: Final = "*"  # the key of the refusals counted once `max_tracked` windows are open


@dataclass(frozen=True)
class Refusal:
    """One refused request, with nothing secret in it."""

    method: str
    path: str
    status: int
    code: str
    ip: str | None
    user: str | None = None  # the signed-in user's username
    credential: Mapping[str, str] = field(default_factory=dict)  # `api.auth.presented_credential`

    @property
    def actor(self) -> str:
        return f"user:{self.user}" if self.user else "anonymous"


@dataclass(frozen=True)
class AuditLine:
    """An entry to append: `core.audit.record`'s arguments."""

    actor: str
    action: str
    at: datetime
    ip: str | None
    detail: dict[str, Any]


@dataclass
class _Window:
    opened_s: float  # on the monotonic clock
    first_at: datetime
    last: Refusal
    last_at: datetime
    repeats: int = 0
    actors: list[str] = field(default_factory=list)


class RefusalWindows:
    """The counting (module docstring): `admit` says what to write now, `drain` what is still counted."""

    def __init__(
        self, window_s: float = WINDOW_S, max_tracked: int = MAX_TRACKED, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.max_tracked = max_tracked
        self._clock = clock
        self._open: OrderedDict[tuple[str, str], _Window] = OrderedDict()  # opened in time order: oldest first

    def admit(self, refusal: Refusal, at: datetime) -> list[AuditLine]:
        now = self._clock()
        lines = self._close_due(now, at)
        key = (refusal.ip or "", refusal.code)
        if key not in self._open and len(self._open) >= self.max_tracked:
            key = (_OTHER_ADDRESSES, refusal.code)
        window = self._open.get(key)
        if window is None:
            self._open[key] = _Window(opened_s=now, first_at=at, last=refusal, last_at=at, actors=[refusal.actor])
            lines.append(_first(refusal, at, self.window_s, shared=key[0] == _OTHER_ADDRESSES))
        else:
            window.repeats += 1
            window.last, window.last_at = refusal, at
            if refusal.actor not in window.actors and len(window.actors) < MAX_ACTORS:
                window.actors.append(refusal.actor)
        return lines

    def drain(self, at: datetime) -> list[AuditLine]:
        """The summaries of every window still open (the app is stopping); nothing is counted afterwards."""
        lines = [_summary(key, window, at) for key, window in self._open.items() if window.repeats]
        self._open.clear()
        return lines

    def _close_due(self, now: float, at: datetime) -> list[AuditLine]:
        lines = []
        while self._open:
            key, window = next(iter(self._open.items()))
            if window.opened_s + self.window_s > now:
                break
            del self._open[key]
            if window.repeats:
                lines.append(_summary(key, window, at))
        return lines


def _first(refusal: Refusal, at: datetime, window_s: float, *, shared: bool) -> AuditLine:
    detail: dict[str, Any] = {
        "method": refusal.method,
        "path": refusal.path[:MAX_PATH],
        "status": refusal.status,
        "code": refusal.code,
        **refusal.credential,
        "repeats_counted_for_s": window_s,
    }
    if shared:
        detail["repeats_counted_for"] = "every address beyond the ones already counted"
    return AuditLine(refusal.actor, "refused", at, refusal.ip, detail)


def _summary(key: tuple[str, str], window: _Window, at: datetime) -> AuditLine:
    last = window.last
    detail = {
        "status": last.status,
        "code": last.code,
        "repeats": window.repeats,
        "first_at": audit.canonical_time(window.first_at),
        "last_at": audit.canonical_time(window.last_at),
        "last_method": last.method,
        "last_path": last.path[:MAX_PATH],
        "actors": window.actors,
    }
    ip = None if key[0] in {_OTHER_ADDRESSES, ""} else key[0]
    return AuditLine(SUMMARY_ACTOR, "refused_repeated", at, ip, detail)


class RefusalAudit:
    """Writes what `RefusalWindows` lets through to the audit trail; one per app, at `app.state.refusal_audit`."""

    def __init__(self, db: sessionmaker[Session], windows: RefusalWindows | None = None) -> None:
        self.db = db
        self.windows = windows or RefusalWindows()
        self._lock = threading.Lock()

    async def refused(self, refusal: Refusal) -> None:
        with self._lock:
            lines = self.windows.admit(refusal, utcnow())
        if lines:
            await run_in_threadpool(self.write, lines)

    def flush(self) -> None:
        with self._lock:
            lines = self.windows.drain(utcnow())
        self.write(lines)

    def write(self, lines: list[AuditLine]) -> None:
        if not lines:
            return
        try:
            with self.db() as db:
                for line in lines:
                    audit.record(db, line.actor, line.action, at=line.at, ip=line.ip, **line.detail)
                db.commit()
        except SQLAlchemyError as exc:  # the refusal itself is still answered
            log.warning("refused requests not audited", extra={"entries": len(lines), "error": type(exc).__name__})


def install_refusal_audit(app: FastAPI, db: sessionmaker[Session]) -> None:
    """Give `app` its recorder, once: the platform API and the review UI share it when they share an app. What is
    still counted is written when the app shuts down."""
    if getattr(app.state, "refusal_audit", None) is not None:
        return
    app.state.refusal_audit = RefusalAudit(db)
    # Read at shutdown, not now: a test may have put its own recorder in place.
    close_on_shutdown(app, lambda: app.state.refusal_audit.flush())


async def note_refusal(
    request: Request, status: int, code: str, *, user: str | None = None, credential: Mapping[str, str] | None = None
) -> None:
    """Hand one refusal to the app's recorder (an app without one records nothing)."""
    recorder: RefusalAudit | None = getattr(request.app.state, "refusal_audit", None)
    if recorder is None:
        return
    ip = request.client.host if request.client else None
    await recorder.refused(Refusal(request.method, request.url.path, status, code, ip, user, dict(credential or {})))
