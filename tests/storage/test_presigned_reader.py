"""Reading an object through a presigned GET URL (what the Ray actors do), against the real embedded S3 server."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import socket
import threading
import time
import uuid

import pytest

from storage.object_store import ObjectNotFound, ObjectStore, ObjectStoreError, S3Location, StorageUnavailable
from storage.presigned_reader import PresignedObject, PresignedReads, PresignedUrlExpired


@pytest.fixture
def prefix() -> str:
    return f"t-presigned/e/{uuid.uuid4().hex}/"


def signed(store: ObjectStore, key: str, ttl_s: int = 300) -> PresignedObject:
    return PresignedObject(key, store.presigned_get(key, ttl_s))


READS = PresignedReads(retries=1, backoff_s=0.01)


def test_reads_at_offsets_and_seeks_through_the_block_cache(store: ObjectStore, prefix: str) -> None:
    data = os.urandom(1_024_000)
    store.put_bytes(prefix + "r", data)
    with READS.open(signed(store, prefix + "r"), block_bytes=100_000, cached_blocks=2) as f:
        assert f.read(10) == data[:10]
        f.seek(len(data) - 50)
        assert f.read() == data[-50:]
        f.seek(150_000)
        assert f.read(120_000) == data[150_000:270_000]  # spans two blocks
        f.seek(5)
        assert f.read(20) == data[5:25]
        assert f.seek(-7, io.SEEK_END) == len(data) - 7 and f.read() == data[-7:]
        f.seek(len(data) + 10)
        assert f.read(5) == b"", "past the end reads nothing"


def test_a_range_names_the_objects_size(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "sized", b"0123456789")
    target = signed(store, prefix + "sized")
    assert READS.read_range(target, 3, 4) == (b"3456", 10)
    assert READS.read_range(target, 8, 100) == (b"89", 10)
    assert READS.read_range(target, 10, 1) == (b"", 10)


def test_an_empty_object_reads_as_empty(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "empty", b"")
    with READS.open(signed(store, prefix + "empty")) as f:
        assert f.read() == b""


def test_a_missing_object_is_not_found(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ObjectNotFound, match="no object at"):
        READS.open(signed(store, prefix + "absent"))


def test_an_expired_url_fails_with_its_own_error(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "old", b"recording")
    target = signed(store, prefix + "old", ttl_s=1)
    time.sleep(2.2)
    with pytest.raises(
        PresignedUrlExpired, match="the presigned URL expired; the job will be retried with a fresh one"
    ):
        READS.open(target)


def test_a_refused_signature_says_what_to_check_and_never_shows_the_url(store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "forged", b"recording")
    target = signed(store, prefix + "forged")
    forged = dataclasses.replace(target, url=target.url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    with pytest.raises(ObjectStoreError, match=r"refused the presigned URL \(SignatureDoesNotMatch") as refused:
        READS.open(forged)
    assert "X-Amz-Signature" not in str(refused.value) and "X-Amz-Signature" not in repr(forged)


def dropping_proxy(target: str, drops: int) -> str:
    """host:port of a TCP proxy to `target` that closes its first `drops` connections without a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    host, port = target.rsplit(":", 1)

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        for accepted in range(1_000):
            client, _ = listener.accept()
            if accepted < drops:
                client.close()
                continue
            upstream = socket.create_connection((host, int(port)))
            for ends in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=ends, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{listener.getsockname()[1]}"


def test_dropped_connections_are_retried(s3: S3Location, store: ObjectStore, prefix: str) -> None:
    store.put_bytes(prefix + "retried", b"made it")
    proxy = dropping_proxy(s3.endpoint, drops=2)
    through_proxy = signed(ObjectStore(dataclasses.replace(s3, endpoint=proxy)), prefix + "retried")
    assert PresignedReads(retries=3, backoff_s=0.01).read_range(through_proxy, 0, 7) == (b"made it", 7)


def test_an_unreachable_server_is_unavailable_not_a_fault(s3: S3Location) -> None:
    """What the fan-out waits out as an object-store outage, where a refusal or a missing object is not."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = ObjectStore(dataclasses.replace(s3, endpoint=f"127.0.0.1:{dead_port}"))
    with pytest.raises(StorageUnavailable, match="presigned GET 't/dead' failed after 2 attempts") as unavailable:
        READS.open(signed(dead, "t/dead"))
    assert "X-Amz-Signature" not in str(unavailable.value)
