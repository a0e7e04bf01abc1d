"""ObjectStore against the real embedded S3 server."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import socket
import threading
import time
import uuid

import httpx
import pytest
from minio import Minio
from minio.versioningconfig import VersioningConfig

from storage.object_store import ObjectExists, ObjectNotFound, ObjectStore, ObjectStoreError, S3Location

MIB = 1024 * 1024


@pytest.fixture
def prefix() -> str:
    return f"t-store/e/{uuid.uuid4().hex}/"


def test_put_never_overwrites_silently(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "a", b"first")
    with pytest.raises(ObjectExists, match="refusing to overwrite"):
        store.put_bytes(prefix + "a", b"second")
    assert store.read_range(prefix + "a", 0, 100) == b"first"
    store.put_bytes(prefix + "a", b"second", overwrite=True)
    assert store.read_range(prefix + "a", 0, 100) == b"second"


def test_same_bytes_again_is_not_an_overwrite(store: ObjectStore, prefix: str) -> None:
    """A retried PUT whose first attempt landed must not fail."""
    first = store.put_bytes(prefix + "same", b"payload")
    assert store.put_bytes(prefix + "same", b"payload").etag == first.etag


def test_ranged_reads(store: ObjectStore, prefix: str) -> None:
    data = bytes(range(256)) * 1000
    store.put_bytes(prefix + "r", data)
    assert store.read_range(prefix + "r", 1000, 10) == data[1000:1010]
    assert store.read_range(prefix + "r", len(data) - 5, 100) == data[-5:]
    assert b"".join(store.iter_chunks(prefix + "r", chunk_size=7000)) == data


def test_open_reads_blocks_and_serves_seeks_back_from_them(
    store: ObjectStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demuxer's pattern: the index at one end, samples in the middle, back to the index."""
    data = bytes(range(256)) * 4000  # 1,024,000 bytes
    store.put_bytes(prefix + "seek", data)
    gets: list[tuple[int, int]] = []
    read_range = store.read_range

    def counted(key: str, offset: int, length: int) -> bytes:
        gets.append((offset, length))
        return read_range(key, offset, length)

    monkeypatch.setattr(store, "read_range", counted)
    with store.open(prefix + "seek", block_bytes=100_000, cached_blocks=2) as f:
        assert f.read(10) == data[:10]
        f.seek(len(data) - 50)
        assert f.read() == data[-50:]
        f.seek(5)
        assert f.read(20) == data[5:25]  # the first block again: cached, no GET
        f.seek(150_000)
        assert f.read(120_000) == data[150_000:270_000]  # spans two blocks
        f.seek(0)
        assert f.read(10) == data[:10]  # evicted by then: fetched again
        assert f.seek(0, io.SEEK_END) == len(data)
    assert gets == [(0, 100_000), (1_000_000, 24_000), (100_000, 100_000), (200_000, 100_000), (0, 100_000)]


def test_multipart_upload_resume_and_complete(store: ObjectStore, prefix: str) -> None:
    key = prefix + "video"
    parts = [b"a" * (5 * MIB), b"b" * (5 * MIB), b"tail"]
    upload_id = store.create_multipart(key, content_type="video/mp4")
    store.upload_part(key, upload_id, 1, parts[0])
    store.upload_part(key, upload_id, 3, parts[2])
    assert [p.part_number for p in store.list_parts(key, upload_id)] == [1, 3]
    # a presigned part URL is a real alternative path for part 2
    url = store.presigned_upload_part(key, upload_id, 2, ttl_s=60)
    assert httpx.put(url, content=parts[1]).status_code == 200
    listed = store.list_parts(key, upload_id)
    assert [(p.part_number, p.size) for p in listed] == [(1, 5 * MIB), (2, 5 * MIB), (3, 4)]
    info = store.complete_multipart(key, upload_id, listed)
    assert info.size == 10 * MIB + 4
    assert hashlib.sha256(b"".join(store.iter_chunks(key))).digest() == hashlib.sha256(b"".join(parts)).digest()


def test_multipart_complete_refuses_existing_key(store: ObjectStore, prefix: str) -> None:
    key = prefix + "taken"
    store.put_bytes(key, b"original")
    upload_id = store.create_multipart(key)
    store.upload_part(key, upload_id, 1, b"replacement")
    with pytest.raises(ObjectExists):
        store.complete_multipart(key, upload_id, store.list_parts(key, upload_id))
    assert store.read_range(key, 0, 100) == b"original"


def test_put_file_streams_in_parts(store: ObjectStore, prefix: str) -> None:
    data = b"x" * (12 * MIB + 3)
    info = store.put_file(prefix + "big", io.BytesIO(data), len(data), part_size=5 * MIB)
    assert info.size == len(data)


def test_presigned_get_works_then_expires(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "p", b"secret recording")
    url = store.presigned_get(prefix + "p", ttl_s=2)
    assert httpx.get(url).content == b"secret recording"
    time.sleep(3.2)
    assert httpx.get(url).status_code == 403


def test_delete_prefix_removes_objects_and_open_uploads(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "media/webcam", b"v")
    store.put_bytes(prefix + "evidence/1", b"e")
    store.create_multipart(prefix + "media/screen")
    other = prefix.rstrip("/") + "-other/keep"
    store.put_bytes(other, b"k")
    assert store.delete_prefix(prefix) == 2
    assert list(store.list_objects(prefix)) == []
    assert store.list_multipart_uploads(prefix) == []
    assert store.stat(other) is not None
    with pytest.raises(ValueError, match="ending in '/'"):
        store.delete_prefix("no-slash")


def test_missing_objects_raise_specific_errors(store: ObjectStore, prefix: str) -> None:
    assert store.stat(prefix + "nope") is None
    with pytest.raises(ObjectNotFound):
        store.read_range(prefix + "nope", 0, 1)
    with pytest.raises(ObjectNotFound):
        store.upload_part(prefix + "nope", "no-such-upload", 1, b"x")


class _FlakyProxy:
    """A TCP proxy to the S3 server that drops the first `drops` connections without answering."""

    def __init__(self, target_port: int, drops: int) -> None:
        self.drops = drops
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.drops > 0:
                self.drops -= 1
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_transient_connection_failures_are_retried(s3: S3Location, prefix: str) -> None:
    proxy = _FlakyProxy(int(s3.endpoint.rsplit(":", 1)[1]), drops=2)
    flaky = ObjectStore(
        S3Location(f"127.0.0.1:{proxy.port}", s3.access_key, s3.secret_key, s3.bucket), retries=3, backoff_s=0.01
    )
    flaky.put_bytes(prefix + "retried", b"made it")
    assert flaky.read_range(prefix + "retried", 0, 10) == b"made it"


def test_unreachable_server_fails_with_a_clear_error(s3: S3Location) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = ObjectStore(S3Location(f"127.0.0.1:{dead_port}", "k", "s", "dead-bucket"), retries=1, backoff_s=0.01)
    with pytest.raises(ObjectStoreError, match="Check that the S3 endpoint is up"):
        dead.stat("x")


@dataclasses.dataclass(frozen=True)
class Versioned:
    """A bucket of its own with versioning Enabled, the store on it, and the operator's own client to look with."""

    admin: Minio
    bucket: str
    store: ObjectStore

    def every_version(self, prefix: str) -> list[tuple[str, bool]]:
        """(key, is a delete marker) of every version the server still holds under `prefix`."""
        listed = self.admin.list_objects(self.bucket, prefix, recursive=True, include_version=True)
        return sorted((o.object_name or "", o.is_delete_marker) for o in listed)


@pytest.fixture
def versioned(s3: S3Location) -> Versioned:
    admin = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False)
    bucket = f"versioned-{uuid.uuid4().hex[:12]}"
    admin.make_bucket(bucket)
    admin.set_bucket_versioning(bucket, VersioningConfig("Enabled"))
    return Versioned(admin, bucket, ObjectStore(dataclasses.replace(s3, bucket=bucket), retries=2, backoff_s=0.01))


def test_deletes_on_a_versioned_bucket_leave_no_version_and_no_delete_marker(versioned: Versioned, prefix: str) -> None:
    store = versioned.store
    store.put_bytes(prefix + "media/webcam", b"first take")
    store.put_bytes(prefix + "media/webcam", b"second take", overwrite=True)  # two versions of one key
    store.put_bytes(prefix + "evidence/1", b"a face")
    store.put_bytes(prefix + "evidence/2", b"another face")
    versioned.admin.remove_object(versioned.bucket, prefix + "evidence/2")  # a plain DELETE: a marker, data kept
    store.put_bytes(prefix + "single", b"x")
    store.put_bytes(prefix + "single", b"y", overwrite=True)
    store.put_bytes(prefix + "single-not", b"kept")
    assert len(versioned.every_version(prefix)) == 8

    store.delete(prefix + "single")
    assert versioned.every_version(prefix + "single") == [(prefix + "single-not", False)]
    assert store.delete_prefix(prefix) == 4  # objects that held data: each key once, however many versions
    assert versioned.every_version(prefix) == []
    assert store.list_versions(prefix) == []


def test_deletes_on_a_suspended_bucket_remove_the_versions_kept_from_before(versioned: Versioned, prefix: str) -> None:
    versioned.store.put_bytes(prefix + "media/webcam", b"kept as a version")
    versioned.admin.set_bucket_versioning(versioned.bucket, VersioningConfig("Suspended"))
    versioned.store.put_bytes(prefix + "media/webcam", b"the null version", overwrite=True)
    assert len(versioned.every_version(prefix)) == 2
    assert versioned.store.delete_prefix(prefix) == 1
    assert versioned.every_version(prefix) == []


def test_list_prefixes_shows_folders_holding_only_old_versions(versioned: Versioned, prefix: str) -> None:
    store = versioned.store
    store.put_bytes(prefix + "live/a", b"a")
    store.put_bytes(prefix + "hidden/b", b"b")
    versioned.admin.remove_object(versioned.bucket, prefix + "hidden/b")  # only a delete marker is current
    assert store.list_prefixes(prefix) == [prefix + "hidden/", prefix + "live/"]
    assert [v.key for v in store.list_versions(prefix + "hidden/") if not v.delete_marker] == [prefix + "hidden/b"]


def test_a_bucket_without_versioning_is_listed_and_emptied_the_same_way(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "s1/media/webcam", b"v")
    store.put_bytes(prefix + "s2/x", b"x")
    assert store.list_prefixes(prefix) == [prefix + "s1/", prefix + "s2/"]
    assert [(v.key, v.delete_marker) for v in store.list_versions(prefix)] == [
        (prefix + "s1/media/webcam", False),
        (prefix + "s2/x", False),
    ]
    store.delete(prefix + "s2/x")
    assert store.stat(prefix + "s2/x") is None and store.list_versions(prefix + "s2/") == []
    assert store.delete_prefix(prefix) == 1 and store.list_versions(prefix) == []
