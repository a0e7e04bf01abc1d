"""What reaching the object store can fail with, and the one retry loop that waits out what a retry can fix.

`ObjectStore` (through the `minio` client) and `PresignedReads` (plain ranged GETs on a signed URL) both retry
transient failures the same way: exponential backoff with jitter, each retry logged, and once the retries are
spent, `StorageUnavailable` (the API answers it with a 503; the fan-out waits it out as an outage). Each says
which failures are transient; everything else surfaces at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class ObjectStoreError(RuntimeError):
    """Storage failed for a reason a retry will not fix; the message says which key and why."""


class StorageUnavailable(ObjectStoreError):
    """The S3 server did not answer, or answered with a server-side error (5xx, SlowDown), through every retry.

    Nothing was refused: the same call is expected to succeed once the server is back, so the API answers 503
    and clients retry later, where an `ObjectStoreError` is a fault to report.
    """

    def __init__(self, operation: str, key: str, attempts: int, cause: BaseException) -> None:
        super().__init__(
            f"{operation} {key!r} failed after {attempts} attempts: {cause}. "
            "Check that the S3 endpoint is up and reachable."
        )
        self.operation = operation
        self.key = key


def retried(
    what: str,
    key: str,
    fn: Callable[[], T],
    *,
    retries: int,
    backoff_s: float,
    transient: Callable[[BaseException], bool],
) -> T:
    """`fn()`, tried again after `backoff_s` x 2^attempt (x 0.5-1.5, jitter) while it raises an error `transient`
    accepts, at most `retries` times; then `StorageUnavailable`. Any other error is raised at once."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            if attempt == retries:
                raise StorageUnavailable(what, key, attempt + 1, exc) from exc
            delay = backoff_s * (2**attempt) * (0.5 + random.random())
            log.warning(
                "s3 transient error, retrying",
                extra={"op": what, "key": key, "attempt": attempt + 1, "delay_s": round(delay, 3), "error": str(exc)},
            )
            time.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")
