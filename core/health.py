"""Readiness: whether the dependencies a process needs (the database, the object store) answer, each within a
timeout, checked on threads of their own.

A probe must answer in time whatever the dependency does: a database that hangs must not hang the probe, and
a probe must never wait for a thread of a pool that serves requests (the API's 40 threads can all be busy with
uploads). So each dependency is checked on a daemon thread started for it, and at most one check per
dependency runs at a time: while one still hangs, the next probe waits on that same check rather than starting
another, so a hung dependency costs one thread, not one per probe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dependency:
    """Something a process needs, by the name an operator knows it by; `check` raises unless it answers."""

    name: str
    check: Callable[[], object]


@dataclass(frozen=True)
class Failure:
    """A dependency that did not answer: `reason` is short and safe to show anyone (a probe's answer may be
    public); `detail`, for the log, may name hosts and addresses."""

    dependency: str
    reason: str
    detail: str


class NotReady(RuntimeError):
    """One or more dependencies did not answer; the message names each and why."""

    def __init__(self, failures: Sequence[Failure]) -> None:
        super().__init__("; ".join(f"{f.dependency}: {f.reason}" for f in failures))
        self.failures = tuple(failures)


def failure_of(name: str, check: Future[None], timeout_s: float) -> Failure | None:
    """How a dependency's check went, as a failure, or None if it answered."""
    if not check.done():
        waited = f"no answer within {timeout_s:g} s"
        return Failure(name, waited, waited)
    error = check.exception()
    if error is None:
        return None
    return Failure(name, f"failed ({type(error).__name__})", f"{type(error).__name__}: {str(error)[:500]}")


class DependencyChecks:
    """Check every dependency at once, each within `timeout_s` (see the module's docstring)."""

    def __init__(self, dependencies: Sequence[Dependency], timeout_s: float) -> None:
        names = [d.name for d in dependencies]
        if len(set(names)) != len(names) or timeout_s <= 0:
            raise ValueError(f"DependencyChecks needs distinct names and timeout_s > 0, got {names} and {timeout_s}")
        self.dependencies = tuple(dependencies)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._running: dict[str, Future[None]] = {}
        self._failing: frozenset[str] = frozenset()

    def failures(self) -> list[Failure]:
        """The dependencies that did not answer within the timeout (blocks at most that long)."""
        checks = {d.name: self._start(d) for d in self.dependencies}
        wait(checks.values(), timeout=self.timeout_s)
        failures = [f for name, check in checks.items() if (f := failure_of(name, check, self.timeout_s))]
        self._log_change(failures)
        return failures

    def check(self) -> None:
        """Raise `NotReady` naming every dependency that did not answer in time."""
        failures = self.failures()
        if failures:
            raise NotReady(failures)

    def _start(self, dependency: Dependency) -> Future[None]:
        with self._lock:
            running = self._running.get(dependency.name)
            if running is not None and not running.done():
                return running  # still hanging: wait on it again rather than start another
            check: Future[None] = Future()
            self._running[dependency.name] = check
        thread = threading.Thread(
            target=_run, args=(dependency.check, check), name=f"ready-{dependency.name}", daemon=True
        )
        thread.start()
        return check

    def _log_change(self, failures: Sequence[Failure]) -> None:
        """Log when the set of failing dependencies changes, not on every probe."""
        failing = frozenset(f.dependency for f in failures)
        with self._lock:
            changed, self._failing = failing != self._failing, failing
        if changed and failures:
            log.warning("not ready", extra={"failing": {f.dependency: f.detail for f in failures}})
        elif changed:
            log.info("ready again", extra={"dependencies": [d.name for d in self.dependencies]})


def _run(check: Callable[[], object], future: Future[None]) -> None:
    try:
        check()
    except BaseException as exc:  # reported through the future, read by `failure_of`
        future.set_exception(exc)
    else:
        future.set_result(None)
