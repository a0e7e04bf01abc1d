"""Read one object through a presigned GET URL: how the Ray actors read recordings without S3 credentials.

Why: an actor's constructor and task arguments travel to the Ray cluster and sit in its object store, so
credentials among them would let anything that reaches the cluster read every tenant's recordings (issue 18).
The job worker, which holds the credentials, signs a GET URL for the one recording a chunk needs, valid for a
bounded time; the URL grants that object only, and only until it expires. It is a bearer credential while it
lasts, so `PresignedObject` keeps it out of its repr and every error here names the key instead.

Reads are ranged GETs through the same block cache as `ObjectStore.open` (`RangeReader`); the object's size comes
from the first answer's `Content-Range` (a presigned GET cannot be sent as a HEAD: the signature covers the
method). Connection errors and the server's own errors (5xx, SlowDown) go through the store's own retry loop
(`storage.retries`), then raise `StorageUnavailable`, so a caller still tells an object-store outage from a fault.
A 403 that says the request expired raises `PresignedUrlExpired`, a 404 `ObjectNotFound`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from functools import partial

import urllib3

from storage.object_store import ObjectNotFound, RangeReader
from storage.retries import ObjectStoreError, retried

_TOTAL_SIZE = re.compile(r"^bytes (?:\d+-\d+|\*)/(\d+)$")  # Content-Range: "bytes 0-0/2560" or "bytes */0"


@dataclass(frozen=True)
class PresignedObject:
    """A presigned GET URL for one object, and the object's key (which messages name instead of the URL)."""

    key: str
    url: str = field(repr=False)


class PresignedUrlExpired(ObjectStoreError):
    """The URL's time ran out before the read (or the signer's clock runs ahead of the server's)."""


class PresignedReads:
    """Ranged GETs through presigned URLs over one connection pool (an actor keeps one for its life)."""

    def __init__(self, *, retries: int = 4, backoff_s: float = 0.2) -> None:
        self._retries, self._backoff_s = retries, backoff_s
        # Retries are ours (logged, with jitter, and only for what a retry can fix), so urllib3's own are off.
        self._http = urllib3.PoolManager(maxsize=4, retries=False, timeout=urllib3.Timeout(connect=10.0, read=120.0))

    def open(
        self, target: PresignedObject, *, block_bytes: int = 1024 * 1024, cached_blocks: int = 4
    ) -> io.BufferedReader:
        """A read-only, seekable file object over the object, with `ObjectStore.open`'s block cache."""
        _, size = self.read_range(target, 0, 1)
        fetch = partial(self._bytes, target)
        return io.BufferedReader(
            RangeReader(fetch, target.key, size, block_bytes, cached_blocks), buffer_size=64 * 1024
        )

    def read_range(self, target: PresignedObject, offset: int, length: int) -> tuple[bytes, int]:
        """Bytes [offset, offset+length) of the object (fewer at its end, none past it), and the object's size."""
        if offset < 0 or length <= 0:
            raise ValueError(f"read_range needs offset >= 0 and length > 0, got offset={offset} length={length}")
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}

        def get() -> tuple[bytes, int]:
            response = self._http.request("GET", target.url, headers=headers)
            if _server_side(response.status):
                raise _ServerTrouble(f"HTTP {response.status}: {_s3_error(response.data)}")
            return _answer(target, response)

        return retried(
            "presigned GET", target.key, get, retries=self._retries, backoff_s=self._backoff_s, transient=_transient
        )

    def _bytes(self, target: PresignedObject, offset: int, length: int) -> bytes:
        return self.read_range(target, offset, length)[0]


def _answer(target: PresignedObject, response: urllib3.BaseHTTPResponse) -> tuple[bytes, int]:
    """What a ranged GET that the server did not fail on says: (bytes, object size), or why it was refused."""
    status, key = response.status, target.key
    if status in (206, 416):  # 416: the range starts at or past the end (an empty object, at offset 0)
        total = _TOTAL_SIZE.match(response.headers.get("Content-Range", ""))
        if total is None:
            raise ObjectStoreError(f"{key!r}: the presigned GET answered {status} without an object size")
        return (response.data if status == 206 else b""), int(total[1])
    if status == 404:
        raise ObjectNotFound(f"no object at {key!r}")
    reason = _s3_error(response.data)
    if status == 403 and "expired" in reason.lower():
        raise PresignedUrlExpired(f"{key!r}: the presigned URL expired; the job will be retried with a fresh one")
    if status == 403:
        raise ObjectStoreError(
            f"{key!r}: the object store refused the presigned URL ({reason}); check the job worker's S3 credentials "
            "and that its clock agrees with the server's"
        )
    if status == 200:
        raise ObjectStoreError(f"{key!r}: the S3 server ignored the Range header; it must support ranged GETs")
    raise ObjectStoreError(f"{key!r}: the presigned GET answered HTTP {status} ({reason})")


class _ServerTrouble(ObjectStoreError):
    """The server answered with its own error (5xx, SlowDown): a retry may fix it."""


def _transient(error: BaseException) -> bool:
    """Whether a retry may fix `error`: a connection refused or reset, a timeout, a short body, or a 5xx."""
    return isinstance(error, urllib3.exceptions.HTTPError | _ServerTrouble)


def _server_side(status: int) -> bool:
    """Whether a status is the server's trouble, which a retry may fix (5xx, SlowDown's 503; not 501)."""
    return status >= 500 and status != 501


def _s3_error(body: bytes) -> str:
    """An S3 error document's "Code: Message", or the start of the body when it is not one."""
    text = body[:2000].decode("utf-8", "replace")
    code, message = re.search(r"<Code>(.*?)</Code>", text), re.search(r"<Message>(.*?)</Message>", text)
    if code is None:
        return text[:200].strip() or "no body"
    return f"{code[1]}: {message[1]}" if message else code[1]


__all__ = ["PresignedObject", "PresignedReads", "PresignedUrlExpired"]
