"""The embedded SeaweedFS's start-up when a port it was given is taken before it binds it (a real server, a real
socket holding the port)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storage import embedded_s3
from storage.embedded_s3 import EmbeddedS3, EmbeddedS3Error
from storage.object_store import ObjectStore

FILER_GRPC = 6  # its index in what `EmbeddedS3` asks of `free_ports`: master, volume, filer, s3, then the gRPC ports


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def ports_with_filer_grpc_taken(taken_port: int, times: int) -> tuple[list[list[int]], Callable[[int], list[int]]]:
    """Replaces `free_ports`: the first `times` calls hand out `taken_port` as the filer's gRPC port; returns the
    list of calls' port lists, filled as they come."""
    calls: list[list[int]] = []
    real = embedded_s3.free_ports

    def free_ports(count: int) -> list[int]:
        ports = real(count)
        if len(calls) < times:
            ports[FILER_GRPC] = taken_port
        calls.append(ports)
        return ports

    return calls, free_ports


def test_a_port_taken_before_seaweedfs_binds_it_is_retried_on_fresh_ports(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, free_ports = ports_with_filer_grpc_taken(taken_port, times=1)
    monkeypatch.setattr(embedded_s3, "free_ports", free_ports)
    with EmbeddedS3(tmp_path, "proctor-ports") as location:
        store = ObjectStore(location)
        store.put_bytes("probe", b"stored after a lost port")
        assert store.read_range("probe", 0, 24) == b"stored after a lost port"
    assert len(calls) == 2
    assert f"listen tcp 127.0.0.1:{taken_port}: bind: address already in use" in (tmp_path / "s3/weed.log").read_text()


def test_ports_taken_on_every_attempt_fail_with_the_reason_and_what_to_do(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, free_ports = ports_with_filer_grpc_taken(taken_port, times=embedded_s3.START_ATTEMPTS)
    monkeypatch.setattr(embedded_s3, "free_ports", free_ports)
    server = EmbeddedS3(tmp_path, "proctor-ports")
    with pytest.raises(EmbeddedS3Error) as raised:
        server.start()
    message = str(raised.value)
    assert f"lost its ports to other processes {embedded_s3.START_ATTEMPTS} times" in message
    assert f"127.0.0.1:{taken_port}: bind: address already in use" in message
    assert "free some ephemeral ports" in message
    assert len(calls) == embedded_s3.START_ATTEMPTS
    assert server.location is None
