"""What part uploads and `complete` may hold at once: the memory of part bodies in flight, the time a stalled
body is waited for, and threads of their own.

A part's body is held in memory from its first byte until it is stored (S3 needs it whole, and `store_part`
hashes it), so the memory grows with the bytes received, never ahead of them, and all bodies in flight together
hold at most `part_buffer_bytes`. A part that would go past that is refused, 503 `upload_capacity` with
`Retry-After`, rather than spooled to a temporary file as a reverse proxy would: the bytes must come back into
memory to be stored anyway, so spooling only moves the peak to the store step and adds a disk that an upload
burst can fill (a pod's ephemeral storage is usually smaller than its memory). Clients already retry a 503
after `Retry-After`, from the parts already stored, so a refusal costs a well-behaved client a short wait, and
only when the server is really that busy. Parts parked for in-order hashing after they are stored are bounded
apart (`ingest.hashing.InOrderHashes`).

A body that sends nothing for `part_read_timeout_s` is answered 408 `part_read_timeout` and dropped. The part
routes' blocking work and `complete` each run on a small thread allowance of their own (`part_threads`,
`complete_threads`): parts waiting for a gap to close or files being verified then wait for each other, never
for the threads that the review UI and the other routes take from the framework's shared pool.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from anyio import CapacityLimiter, fail_after
from fastapi import Request
from starlette.requests import ClientDisconnect

from api.problems import Refused
from ingest.schemas import IngestError

log = logging.getLogger(__name__)

# How long a client refused for lack of memory should wait: parts are stored, and their memory freed, within
# seconds, and clients back off further on each 503 they get in a row.
CAPACITY_RETRY_AFTER_S = 5
CLOSE = {"Connection": "close"}  # the rest of a refused body is not read: the connection cannot carry another


@dataclass(frozen=True)
class PartUploadLimits:
    """What `proctor.wiring` sets from the settings (the defaults are the settings' own)."""

    part_buffer_bytes: int = 256 * 1024 * 1024
    part_read_timeout_s: float = 30.0
    part_threads: int = 8
    complete_threads: int = 4

    def __post_init__(self) -> None:
        if min(self.part_buffer_bytes, self.part_threads, self.complete_threads) < 1 or self.part_read_timeout_s <= 0:
            raise ValueError(f"part upload limits must all be positive, got {self}")

    def check_holds(self, largest_part_bytes: int) -> None:
        """Refuse a buffer that could never hold a whole part: every upload of such parts would be refused."""
        if self.part_buffer_bytes < largest_part_bytes:
            raise ValueError(
                f"part_buffer_bytes ({self.part_buffer_bytes}) is smaller than the largest part a file may have "
                f"({largest_part_bytes} bytes): raise PROCTOR_PART_BUFFER_BYTES or lower PROCTOR_PART_SIZE_BYTES"
            )


class PartBuffers:
    """The bytes all part bodies in flight hold, against their limit. Used from the event loop only (the routes
    that take and give back are async), so it needs no lock."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0

    def has_room(self, size: int) -> bool:
        return self.held_bytes + size <= self.limit_bytes

    def take(self, size: int) -> bool:
        if not self.has_room(size):
            return False
        self.held_bytes += size
        return True

    def give_back(self, size: int) -> None:
        self.held_bytes -= size

    def refusal(self, what: str) -> Refused:
        return Refused(
            IngestError(
                503,
                "upload_capacity",
                f"the server holds as many part uploads in memory as it may ({self.limit_bytes} bytes), so {what} "
                f"was not taken; nothing stored changed: send it again after {CAPACITY_RETRY_AFTER_S} s",
                {"retry_after_s": CAPACITY_RETRY_AFTER_S},
            ),
            {"Retry-After": str(CAPACITY_RETRY_AFTER_S), **CLOSE},
        )


class UploadCapacity:
    """The app's part buffers and thread allowances, built once by `create_api` (`app.state.upload_capacity`)."""

    def __init__(self, limits: PartUploadLimits) -> None:
        self.limits = limits
        self.buffers = PartBuffers(limits.part_buffer_bytes)
        self.part_threads = CapacityLimiter(limits.part_threads)
        self.complete_threads = CapacityLimiter(limits.complete_threads)


def upload_capacity(request: Request) -> UploadCapacity:
    capacity: UploadCapacity = request.app.state.upload_capacity
    return capacity


def read_timeout(what: str, timeout_s: float) -> Refused:
    return Refused(
        IngestError(
            408,
            "part_read_timeout",
            f"{what} sent nothing for {timeout_s:g} s, so it was dropped and nothing stored changed: send the "
            "part again, whole",
            {"read_timeout_s": timeout_s},
        ),
        CLOSE,
    )


@asynccontextmanager
async def received_part(
    chunks: AsyncIterable[bytes], what: str, max_bytes: int, capacity: UploadCapacity
) -> AsyncIterator[bytearray]:
    """The whole body of one part (`what`, for messages), held against the part buffers until the block ends.

    Refused: 408 when the body stalls, 503 when the buffers are full, 422 `part_size_invalid` past `max_bytes`, and
    400 `part_body_incomplete` when the client goes away midway (it never reads that answer: it is for the log and
    the metrics, where an abandoned upload is no server fault)."""
    timeout_s, buffers = capacity.limits.part_read_timeout_s, capacity.buffers
    body, incoming = bytearray(), aiter(chunks)
    try:
        while True:
            try:
                with fail_after(timeout_s):
                    chunk = await anext(incoming)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise read_timeout(what, timeout_s) from None
            except ClientDisconnect:
                log.info("part upload abandoned", extra={"part": what, "received_bytes": len(body)})
                raise IngestError(
                    400,
                    "part_body_incomplete",
                    f"the connection closed after {len(body)} bytes of {what}; nothing stored changed: send it again",
                ) from None
            if len(body) + len(chunk) > max_bytes:
                raise IngestError(422, "part_size_invalid", f"{what} is longer than {max_bytes} bytes")
            if not buffers.take(len(chunk)):
                raise buffers.refusal(what)
            body += chunk
        yield body
    finally:
        buffers.give_back(len(body))
