"""Throttles in front of the login form's password hasher, in memory and free of I/O.

An Argon2id check takes 64 MiB and tens of milliseconds of CPU, so an unthrottled form lets anyone spend a
pod's memory. `LoginLimits` answers, before any hashing, whether an attempt may go on: at most so many
attempts from one address (whatever the username), so many on one username (whatever the address), and so
many failures of one username from one address (the lockout, see `review_ui.sign_in`). Checking and
counting are one step under one lock, so parallel attempts cannot slip past a limit between the two.
`HashSlots` then bounds how many hashes run at once; an attempt that finds no slot within a short wait is
turned away instead of queueing without bound.

The windows are sliding logs of event times, taken from an injected clock (`time.monotonic` in service) so
that tests can step time. Keys whose last event has left the window are dropped as new events arrive, so
memory follows the recent attempts, not every address ever seen. Counts are per process: behind several
replicas an address gets each limit once per replica.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum

USERNAME_KEY_CHARS = 128  # the users table's username column: a longer name cannot exist, so need not be kept


@dataclass(frozen=True)
class Rate:
    """At most `attempts` events in any `window_s` seconds."""

    attempts: int
    window_s: float

    def __post_init__(self) -> None:
        if self.attempts < 1 or not self.window_s > 0:
            raise ValueError(f"a rate needs attempts >= 1 and window_s > 0, got {self.attempts} per {self.window_s} s")


class Limit(Enum):
    """Which limit turned an attempt away."""

    ADDRESS = "address"  # attempts from one client address
    USERNAME = "username"  # attempts on one username
    FAILURES = "failures"  # failures of one username from one address: the lockout


@dataclass(frozen=True)
class Throttled:
    limit: Limit
    retry_after_s: int  # whole seconds until the limit lets an attempt through again (at least 1)


class SlidingWindow:
    """A log of event times per key, with at most `rate.attempts` of them in any `rate.window_s` seconds.

    Not locked on its own: `LoginLimits` serialises every call.
    """

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._events: OrderedDict[str, deque[float]] = OrderedDict()  # oldest last event first

    def __len__(self) -> int:
        return len(self._events)

    def wait_s(self, key: str, now: float) -> float:
        """0 when an event for `key` may happen at `now`, else the seconds until one may."""
        events = self._events.get(key)
        if events is None:
            return 0.0
        while events and events[0] <= now - self.rate.window_s:
            events.popleft()
        if len(events) < self.rate.attempts:
            return 0.0
        return events[0] + self.rate.window_s - now

    def add(self, key: str, now: float) -> None:
        self._events.setdefault(key, deque()).append(now)
        self._events.move_to_end(key)
        self._forget_idle(now)

    def drop_last(self, key: str) -> None:
        """Take back the latest event of `key` (an attempt that was counted but never made)."""
        events = self._events.get(key)
        if events:
            events.pop()

    def clear(self, key: str) -> None:
        self._events.pop(key, None)

    def _forget_idle(self, now: float) -> None:
        while self._events:
            oldest_key, events = next(iter(self._events.items()))
            if events and events[-1] > now - self.rate.window_s:
                return
            del self._events[oldest_key]


class LoginLimits:
    """The three windows of the login form, checked and counted together under one lock."""

    def __init__(self, per_address: Rate, per_username: Rate, failures: Rate, clock: Callable[[], float]) -> None:
        self._address = SlidingWindow(per_address)
        self._username = SlidingWindow(per_username)
        self._failures = SlidingWindow(failures)
        self._clock = clock
        self._lock = threading.Lock()

    def admit(self, address: str, username: str) -> Throttled | None:
        """Count an attempt and return None, or count nothing and say which limit refuses it and for how long.

        The attempt is counted as a failure of (username, address) straight away; `succeeded` clears that
        count, `refund` takes it back for an attempt that never reached the hasher.
        """
        now, user, pair = self._clock(), _user_key(username), _pair_key(address, username)
        with self._lock:
            for limit, window, key in (
                (Limit.ADDRESS, self._address, address),
                (Limit.FAILURES, self._failures, pair),
                (Limit.USERNAME, self._username, user),
            ):
                wait = window.wait_s(key, now)
                if wait > 0:
                    return Throttled(limit, max(1, math.ceil(wait)))
            self._address.add(address, now)
            self._failures.add(pair, now)
            self._username.add(user, now)
        return None

    def refund(self, address: str, username: str) -> None:
        """An admitted attempt was turned away before its password was checked: it is no failure."""
        with self._lock:
            self._failures.drop_last(_pair_key(address, username))

    def succeeded(self, address: str, username: str) -> None:
        with self._lock:
            self._failures.clear(_pair_key(address, username))

    def tracked_keys(self) -> int:
        """How many keys the windows hold now (memory follows recent attempts only)."""
        with self._lock:
            return len(self._address) + len(self._username) + len(self._failures)


def _user_key(username: str) -> str:
    return username[:USERNAME_KEY_CHARS]


def _pair_key(address: str, username: str) -> str:
    return f"{address}\n{_user_key(username)}"


class NoHashSlot(Exception):
    """Every hash slot stayed busy for the whole wait: the attempt is turned away (429)."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"no password hash slot came free within {wait_s} s")
        self.retry_after_s = max(1, math.ceil(wait_s))


class HashSlots:
    """At most `slots` password hashes at once; a caller waits up to `wait_s` for a slot, then `NoHashSlot`.

    Waiting is asynchronous, so attempts that wait hold no worker thread.
    """

    def __init__(self, slots: int, wait_s: float) -> None:
        if slots < 1 or wait_s < 0:
            raise ValueError(f"hash slots need slots >= 1 and wait_s >= 0, got {slots} and {wait_s}")
        self.wait_s = wait_s
        self._free = asyncio.Semaphore(slots)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.wait_s):
                await self._free.acquire()
        except TimeoutError:
            raise NoHashSlot(self.wait_s) from None
        try:
            yield
        finally:
            self._free.release()
