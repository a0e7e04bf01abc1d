"""Hashing an upload without reading it twice: in part order as parts arrive, or while the probe reads it.

`InOrderHashes` hashes the parts this process receives through the API, in part order; `HashingReader`
hashes what a reader hands out while the probe demuxes the assembled object. Either way `complete` learns
the SHA-256 of the stored bytes, and in the common case reads a multi-gigabyte object once or not at all.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from storage.object_store import UploadedPart

MIB = 1024 * 1024


class HashingReader(io.RawIOBase):
    """Hash the bytes a reader hands out in file order, so one pass both probes and verifies an upload.

    The demuxer reads mostly front to back; whatever it skips or reads out of order is hashed afterwards
    by `finish`, which reads on from the furthest contiguous byte hashed. So the digest is always that of
    the whole object, and in the common case the object is read only once.
    """

    def __init__(self, inner: BinaryIO, size: int) -> None:
        self._inner, self._size, self._hasher, self._frontier = inner, size, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        start = self._inner.tell()
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        end = start + len(data)
        if start <= self._frontier < end:
            self._hasher.update(memoryview(data)[self._frontier - start :])
            self._frontier = end
        return len(data)

    def finish(self) -> tuple[int, str]:
        """Hash whatever was not read in order; returns (bytes seen, hex SHA-256)."""
        self._inner.seek(self._frontier)
        while chunk := self._inner.read(8 * MIB):
            self._hasher.update(chunk)
            self._frontier += len(chunk)
        return self._frontier, self._hasher.hexdigest()


@dataclass
class _RunningHash:
    hasher: Any
    next_part: int = 1  # the next part to feed the hasher
    busy: bool = False  # a request is feeding the hasher part `next_part` (and any parked successors)
    size: int = 0
    etags: dict[int, str] = field(default_factory=dict)
    parked: dict[int, tuple[bytes | bytearray, str]] = field(default_factory=dict)
    parked_bytes: int = 0
    broken: bool = False
    touched: float = 0.0  # when a part of this upload last arrived (the `InOrderHashes` clock)

    def give_up(self) -> None:
        self.broken = True
        self.parked.clear()
        self.parked_bytes = 0


class InOrderHashes:
    """The SHA-256 of uploads, computed from the parts this process receives through the API.

    Parts pass through memory anyway; hashing them then spares `complete` reading a multi-gigabyte object
    back from storage. A part that arrives before its predecessor is parked and hashed by the request that
    fills the gap. Parking is bounded (`max_parked_bytes` per upload): a part that does not fit waits, up to
    `max_wait_s`, for the gap to close. Holding its response is backpressure on the client (a stalled part
    otherwise lets the client's other connections run far ahead), and it costs far less than reading the
    whole object back. It is only a shortcut: a part sent twice, a gap that outlasts the wait, a part sent
    straight to S3, or parts spread over several API processes leave the hash unusable, and `complete`
    reads the object instead. The etags recorded here are checked against the parts S3 assembles, so the
    digest is always of the stored bytes.

    Memory stays bounded when clients vanish: parked parts count against `max_total_parked_bytes` across
    all uploads (an upload that would exceed it gives up), and an upload with no part for `max_idle_s` is
    forgotten with whatever it had parked.
    """

    def __init__(
        self,
        max_parked_bytes: int = 48 * MIB,
        max_wait_s: float = 30.0,
        *,
        max_total_parked_bytes: int = 256 * MIB,
        max_idle_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_parked_bytes = max_parked_bytes
        self._max_wait_s = max_wait_s
        self._max_total_parked_bytes = max_total_parked_bytes
        self._max_idle_s = max_idle_s
        self._clock = clock
        self._changed = threading.Condition()
        self._by_media: dict[str, _RunningHash] = {}

    @property
    def parked_bytes(self) -> int:
        """Bytes of parts held in memory, across all uploads."""
        with self._changed:
            return self._parked_total()

    def _parked_total(self) -> int:
        return sum(r.parked_bytes for r in self._by_media.values())

    def _forget_idle(self, now: float) -> None:
        idle = [m for m, r in self._by_media.items() if not r.busy and now - r.touched > self._max_idle_s]
        for media_id in idle:
            self._by_media.pop(media_id).give_up()
        if idle:
            self._changed.notify_all()

    def add(self, media_id: str, part_number: int, data: bytes | bytearray, etag: str) -> None:
        with self._changed:
            now = self._clock()
            self._forget_idle(now)
            running = self._by_media.setdefault(media_id, _RunningHash(hashlib.sha256()))
            running.touched = now
            deadline = time.monotonic() + self._max_wait_s
            while (
                not running.broken
                and part_number > running.next_part
                and running.parked_bytes + len(data) > self._max_parked_bytes
            ):
                if not self._changed.wait(deadline - time.monotonic()):
                    running.give_up()  # the gap outlasted the wait: `complete` will read the object
                    self._changed.notify_all()
            if running.broken:
                return
            sent_twice = part_number < running.next_part or part_number in running.parked
            if sent_twice or (part_number == running.next_part and running.busy):
                running.give_up()  # the stored part may now differ from what was hashed
                self._changed.notify_all()
                return
            if part_number > running.next_part or running.busy:
                if self._parked_total() + len(data) > self._max_total_parked_bytes:
                    running.give_up()  # the process holds enough parts already: `complete` will read the object
                    self._changed.notify_all()
                    return
                running.parked[part_number] = (data, etag)
                running.parked_bytes += len(data)
                return
            running.busy = True
        while True:  # only the busy holder feeds this hasher, so hashing needs no lock
            running.hasher.update(data)
            with self._changed:
                running.size += len(data)
                running.etags[part_number] = etag
                running.next_part = part_number = part_number + 1
                successor = running.parked.pop(part_number, None)
                if successor is not None:
                    running.parked_bytes -= len(successor[0])
                self._changed.notify_all()  # parked space freed or the gap moved: waiting parts re-check
                if successor is None or running.broken:
                    running.busy = False
                    return
                data, etag = successor

    def take(self, media_id: str, parts: list[UploadedPart]) -> tuple[int, str] | None:
        """(size, hex digest) if every stored part was hashed in order, else None; forgets the media."""
        with self._changed:
            running = self._by_media.pop(media_id, None)
            if running is None or running.broken or running.busy:
                return None
            if running.etags != {p.part_number: p.etag for p in parts}:
                return None
            return running.size, running.hasher.hexdigest()

    def forget(self, media_id: str) -> None:
        with self._changed:
            self._by_media.pop(media_id, None)
