"""S3-compatible object storage over the `minio` client. The only module that imports `minio`.

Why the underscore calls: minio-py exposes multipart upload only inside `put_object`, but resumable
uploads need the S3 primitives themselves (create, upload part, list parts, complete, abort), so this
adapter wraps `Minio._create_multipart_upload` and friends; `pyproject.toml` pins minio to 7.2.x for that.

Writes never overwrite silently: unless `overwrite=True`, a PUT or a multipart completion carries
`If-None-Match: *`, so the server refuses atomically when the key exists (MinIO and SeaweedFS both honour
it), and `ObjectExists` is raised. Transient failures (connection errors, 5xx, SlowDown) are retried with
exponential backoff and jitter, then raised as `StorageUnavailable` (the API answers it with a 503;
`storage.retries`); everything else surfaces at once.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, BinaryIO, TypeVar

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError

from storage.public_endpoint import PublicEndpoint
from storage.retries import ObjectStoreError, StorageUnavailable, retried
from storage.sized_reader import SizedReader

T = TypeVar("T")

_TRANSIENT_S3_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "OperationAborted"}
)
_TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,  # connection refused/reset, protocol and read-timeout errors
    ServerError,
    InvalidResponseError,
    ConnectionError,
    TimeoutError,
)


class ObjectExists(ObjectStoreError):
    """The key already holds an object and the caller did not ask to overwrite it."""


class ObjectNotFound(ObjectStoreError):
    """No object (or no multipart upload) at that key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    content_type: str | None


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object, or a delete marker; on a bucket without versioning, an object's only version."""

    key: str
    version_id: str | None
    delete_marker: bool
    last_modified: datetime | None


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    etag: str
    size: int


@dataclass(frozen=True)
class S3Location:
    """How to reach the object store; the secret key is left out of the repr, so a logged location never shows it."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str
    secure: bool = False
    region: str = "us-east-1"


class ObjectStore:
    """One bucket of an S3-compatible server, addressed by validated keys (see `storage.keys`)."""

    def __init__(
        self, location: S3Location, *, retries: int = 4, backoff_s: float = 0.2, public: PublicEndpoint | None = None
    ) -> None:
        self.bucket = location.bucket
        self._retries = retries
        self._backoff_s = backoff_s
        # Retries are ours (logged, with jitter), so urllib3's own are off; the pool allows parallel parts.
        http = urllib3.PoolManager(
            maxsize=32,
            retries=False,
            timeout=urllib3.Timeout(connect=10.0, read=120.0),
        )
        self._client = _Client(
            location.endpoint,
            access_key=location.access_key,
            secret_key=location.secret_key,
            secure=location.secure,
            region=location.region,
            http_client=http,
        )
        # Presigned URLs are signed for the public endpoint; with the region given, signing makes no request to it.
        self._signer: Minio = self._client
        if public is not None:
            self._signer = Minio(
                public.endpoint, location.access_key, location.secret_key, secure=public.secure, region=location.region
            )

    # -- retries -----------------------------------------------------------------------------------
    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        return retried(what, key, fn, retries=self._retries, backoff_s=self._backoff_s, transient=_transient)

    # -- bucket ------------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        def make() -> None:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise

        self._call("ensure_bucket", self.bucket, make)

    def ping(self) -> None:
        """Raise `ObjectStoreError` unless the bucket answers."""
        self._call("ping", self.bucket, lambda: self._client.bucket_exists(self.bucket))

    # -- single objects ------------------------------------------------------------------------------
    def put_bytes(
        self, key: str, data: bytes, *, content_type: str = "application/octet-stream", overwrite: bool = False
    ) -> ObjectInfo:
        headers: dict[str, Any] = {"Content-Type": content_type}
        if not overwrite:
            headers["If-None-Match"] = "*"

        def put() -> ObjectInfo:
            try:
                result = self._client._put_object(self.bucket, key, data, dict(headers))
            except S3Error as exc:
                if exc.code == "PreconditionFailed":
                    existing = self.stat(key)
                    if existing is not None and existing.size == len(data) and _same_md5(existing.etag, data):
                        return existing  # our own earlier attempt landed before a retry: not an overwrite
                    raise ObjectExists(f"refusing to overwrite {key!r}: an object is already stored there") from exc
                raise
            return ObjectInfo(key=key, size=len(data), etag=(result.etag or "").strip('"'), content_type=content_type)

        return self._call("put", key, put)

    def put_file(
        self,
        key: str,
        stream: BinaryIO,
        length: int,
        *,
        content_type: str = "application/octet-stream",
        part_size: int = 16 * 1024 * 1024,
    ) -> ObjectInfo:
        """Stream a large local file into a new key (multipart, bounded memory); never overwrites."""
        upload_id = self.create_multipart(key, content_type=content_type)
        try:
            number = 0
            while chunk := stream.read(part_size):
                number += 1
                self.upload_part(key, upload_id, number, chunk)
            return self.complete_multipart(key, upload_id, self.list_parts(key, upload_id))
        except BaseException:
            self.abort_multipart(key, upload_id)
            raise

    def stat(self, key: str) -> ObjectInfo | None:
        def stat() -> ObjectInfo | None:
            try:
                obj = self._client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                    return None
                raise
            return ObjectInfo(
                key=key, size=obj.size or 0, etag=(obj.etag or "").strip('"'), content_type=obj.content_type
            )

        return self._call("stat", key, stat)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) of an object (fewer at its end)."""
        if offset < 0 or length <= 0:
            raise ValueError(f"read_range needs offset >= 0 and length > 0, got offset={offset} length={length}")

        def read() -> bytes:
            response = self._get(key, offset, length)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call("read_range", key, read)

    def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """Stream a whole object in chunks without holding it; a broken stream resumes at its offset."""
        info = self.stat(key)
        if info is None:
            raise ObjectNotFound(f"no object at {key!r}")
        offset = 0
        while offset < info.size:
            chunk = self.read_range(key, offset, min(8 * chunk_size, info.size - offset))
            if not chunk:
                raise ObjectStoreError(f"{key!r} ended at byte {offset} of {info.size} while streaming")
            for start in range(0, len(chunk), chunk_size):
                yield chunk[start : start + chunk_size]
            offset += len(chunk)

    def open(self, key: str, *, block_bytes: int = 1024 * 1024, cached_blocks: int = 4) -> io.BufferedReader:
        """A read-only, seekable file object over the object (ranged GETs), e.g. for PyAV to demux from.

        Reads go to storage in aligned blocks of `block_bytes`, and the last `cached_blocks` blocks are kept:
        demuxers seek back and forth (an MP4's index sits at one end of the file, a chunk's samples in the
        middle), and a plain read buffer is dropped on every seek, which measured 25 MB of GETs to decode a
        1.6 MB stretch of video with 8 MB buffers. Sequential whole-object reads want large blocks instead.
        """
        info = self.stat(key)
        if info is None:
            raise ObjectNotFound(f"no object at {key!r}")
        reader = RangeReader(partial(self.read_range, key), key, info.size, block_bytes, cached_blocks)
        return io.BufferedReader(reader, buffer_size=64 * 1024)

    def _get(self, key: str, offset: int, length: int) -> urllib3.BaseHTTPResponse:
        try:
            return self._client.get_object(self.bucket, key, offset=offset, length=length)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject"}:
                raise ObjectNotFound(f"no object at {key!r}") from exc
            raise

    def presigned_get(self, key: str, ttl_s: int) -> str:
        return self._signer.get_presigned_url("GET", self.bucket, key, expires=timedelta(seconds=ttl_s))

    def delete(self, key: str) -> None:
        """Delete the object at `key`: every version, where the bucket keeps them (see `delete_prefix`)."""
        self._delete_versions(key, [v for v in self.list_versions(key) if v.key == key])

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`; a listing that breaks off midway raises `StorageUnavailable` (no retry:
        the caller has seen part of it)."""
        try:
            for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if obj.object_name is None:
                    continue
                yield ObjectInfo(
                    key=obj.object_name,
                    size=obj.size or 0,
                    etag=(obj.etag or "").strip('"'),
                    content_type=obj.content_type,
                )
        except _TRANSIENT_EXCEPTIONS as exc:
            raise StorageUnavailable("list_objects", prefix, 1, exc) from exc

    def list_versions(self, prefix: str) -> list[ObjectVersion]:
        """Every version and delete marker under `prefix` (without versioning: every object, version "null")."""
        listed = self._listing(prefix, recursive=True)
        return [ObjectVersion(o.object_name, o.version_id, o.is_delete_marker, o.last_modified) for o in listed]

    def list_prefixes(self, prefix: str) -> list[str]:
        """The "folders" one level under `prefix` (`a/b/` under `a/`), those holding only old versions included."""
        return [o.object_name for o in self._listing(prefix, recursive=False) if o.is_dir]

    def _listing(self, prefix: str, *, recursive: bool) -> list[Any]:
        listed = partial(self._client.list_objects, self.bucket, prefix, recursive=recursive, include_version=True)
        return self._call("list", prefix, lambda: [o for o in listed() if o.object_name is not None])

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`, each version and delete marker by its id (with versioning, a plain
        DELETE only stacks a marker on the data), and abort its unfinished uploads; returns how many held data."""
        if not prefix.endswith("/") or prefix.startswith("/"):
            raise ValueError(f"delete_prefix needs a relative prefix ending in '/', got {prefix!r}")
        for upload_key, upload_id in self.list_multipart_uploads(prefix):
            self.abort_multipart(upload_key, upload_id)
        versions = self.list_versions(prefix)
        self._delete_versions(prefix, versions)
        return len({v.key for v in versions if not v.delete_marker})

    def _delete_versions(self, where: str, versions: list[ObjectVersion]) -> None:
        doomed = [DeleteObject(v.key, v.version_id) for v in versions]
        errors = self._call("delete", where, lambda: list(self._client.remove_objects(self.bucket, doomed)))
        if errors:
            raise ObjectStoreError(f"could not delete {len(errors)} objects under {where!r}: {errors[0]}")

    # -- multipart ------------------------------------------------------------------------------------
    def create_multipart(self, key: str, *, content_type: str = "application/octet-stream") -> str:
        return self._call(
            "create_multipart",
            key,
            lambda: self._client._create_multipart_upload(self.bucket, key, {"Content-Type": content_type}),
        )

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: bytes | bytearray, *, sha256: str | None = None
    ) -> str:
        """Store one part (1..10000); re-sending a part number replaces it. Returns its ETag (md5).

        `sha256`, the hex digest the caller already computed, saves hashing the part again for signing.
        """
        if not 1 <= part_number <= 10_000:
            raise ValueError(f"S3 part numbers run from 1 to 10000, got {part_number}")

        def upload() -> str:
            try:
                headers: dict[str, Any] | None = {_KNOWN_SHA256: sha256} if sha256 else None
                body: bytes = data  # type: ignore[assignment]  # any buffer works: urllib3 sends it as is
                return self._client._upload_part(self.bucket, key, body, headers, upload_id, part_number).strip('"')
            except S3Error as exc:
                if exc.code == "NoSuchUpload":
                    raise ObjectNotFound(f"multipart upload {upload_id} for {key!r} no longer exists") from exc
                raise

        return self._call("upload_part", key, upload)

    def presigned_upload_part(self, key: str, upload_id: str, part_number: int, ttl_s: int) -> str:
        return self._signer.get_presigned_url(
            "PUT",
            self.bucket,
            key,
            expires=timedelta(seconds=ttl_s),
            extra_query_params={"uploadId": upload_id, "partNumber": str(part_number)},
        )

    def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        def list_parts() -> list[UploadedPart]:
            parts: list[UploadedPart] = []
            marker: str | None = None
            while True:
                try:
                    result = self._client._list_parts(self.bucket, key, upload_id, part_number_marker=marker)
                except S3Error as exc:
                    if exc.code == "NoSuchUpload":
                        raise ObjectNotFound(f"multipart upload {upload_id} for {key!r} no longer exists") from exc
                    raise
                parts.extend(UploadedPart(p.part_number, p.etag.strip('"'), p.size or 0) for p in result.parts)
                if not result.is_truncated:
                    return parts
                marker = str(result.next_part_number_marker)

        return self._call("list_parts", key, list_parts)

    def complete_multipart(self, key: str, upload_id: str, parts: list[UploadedPart]) -> ObjectInfo:
        """Assemble the parts; refuses (`ObjectExists`) if the key already holds an object."""
        ordered = sorted(parts, key=lambda p: p.part_number)
        body = "".join(f'<Part><PartNumber>{p.part_number}</PartNumber><ETag>"{p.etag}"</ETag></Part>' for p in ordered)
        payload = f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode()

        def complete() -> ObjectInfo:
            try:
                self._client._execute(
                    "POST",
                    self.bucket,
                    key,
                    body=payload,
                    headers={"Content-Type": "application/xml", "If-None-Match": "*"},
                    query_params={"uploadId": upload_id},
                )
            except S3Error as exc:
                if exc.code == "PreconditionFailed":
                    raise ObjectExists(f"refusing to complete over {key!r}: an object is already stored there") from exc
                if exc.code == "NoSuchUpload":
                    raise ObjectNotFound(f"multipart upload {upload_id} for {key!r} no longer exists") from exc
                raise
            info = self.stat(key)
            if info is None:
                raise ObjectStoreError(f"completed {key!r} but the server does not show it")
            return info

        return self._call("complete_multipart", key, complete)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        def abort() -> None:
            try:
                self._client._abort_multipart_upload(self.bucket, key, upload_id)
            except S3Error as exc:
                if exc.code != "NoSuchUpload":
                    raise

        self._call("abort_multipart", key, abort)

    def list_multipart_uploads(self, prefix: str) -> list[tuple[str, str]]:
        result = self._call(
            "list_multipart_uploads", prefix, lambda: self._client._list_multipart_uploads(self.bucket, prefix=prefix)
        )
        return [(u.object_name, u.upload_id) for u in result.uploads if u.object_name and u.upload_id]


_KNOWN_SHA256 = "X-Proctor-Known-Sha256"


class _Client(Minio):
    """minio's client, taking a payload SHA-256 the caller already has instead of hashing the body again.

    Over plain HTTP, SigV4 signs the payload's SHA-256; the API computes it anyway to check each part, so
    hashing every byte a second time for the signature would only cost CPU.
    """

    def _build_headers(self, host: str, headers: Any = None, body: Any = None, creds: Any = None) -> tuple[Any, Any]:
        known = headers.pop(_KNOWN_SHA256, None) if headers else None
        if known is None or not body or self._base_url.is_https:
            return super()._build_headers(host, headers, body, creds)
        built, date = super()._build_headers(host, headers, None, creds)
        built["Content-Length"] = str(len(body))
        built["x-amz-content-sha256"] = known
        return built, date


class RangeReader(SizedReader):
    """Seekable reads of `fetch(offset, length)` in aligned blocks, the last few kept (see `ObjectStore.open`)."""

    def __init__(self, fetch: Callable[[int, int], bytes], key: str, size: int, block_bytes: int, cached: int) -> None:
        if block_bytes < 1 or cached < 1:
            raise ValueError(f"block_bytes and cached_blocks must be >= 1, got {block_bytes} and {cached}")
        self._fetch, self._key, self._size, self._pos = fetch, key, size, 0
        self._block_bytes, self._cached_blocks = block_bytes, cached
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size or len(buffer) == 0:
            return 0
        start = self._pos - self._pos % self._block_bytes
        block = self._blocks.get(start)
        if block is None:
            block = self._fetch(start, min(self._block_bytes, self._size - start))
            self._blocks[start] = block
            if len(self._blocks) > self._cached_blocks:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(start)
        offset = self._pos - start
        count = min(len(buffer), len(block) - offset)
        if count <= 0:
            raise ObjectStoreError(f"{self._key!r}: storage returned {len(block)} bytes at {start}, expected more")
        buffer[:count] = block[offset : offset + count]
        self._pos += count
        return count


def _transient(error: BaseException) -> bool:
    """Whether a retry may fix `error`: a connection or protocol failure, or the server's own trouble."""
    return isinstance(error, _TRANSIENT_EXCEPTIONS) or (isinstance(error, S3Error) and _server_side(error))


def _server_side(error: S3Error) -> bool:
    """Whether an S3 error response is the server's trouble (a 5xx, or a code that says "try again")."""
    status = getattr(error.response, "status", None)
    return error.code in _TRANSIENT_S3_CODES or (isinstance(status, int) and status >= 500 and status != 501)


def _same_md5(etag: str, data: bytes) -> bool:
    return etag.strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()


__all__ = [
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectVersion",
    "S3Location",
    "StorageUnavailable",
    "UploadedPart",
]
