"""The probe sandbox's own protocol when the child runs out of memory in PyAV's read callback."""

from __future__ import annotations

import io

import pytest

from ingest.probe_process import RemoteFile, Sandbox, SandboxExceeded, exit_verdict


class StarvedPipe(io.RawIOBase):
    """A reply pipe whose reads fail as a child at its memory limit fails to allocate the buffer."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise MemoryError


def test_a_read_that_runs_out_of_memory_is_remembered_and_asks_for_nothing_more() -> None:
    """PyAV drops an exception raised in its read callback; the child must still answer "memory"."""
    requests = io.BytesIO()
    remote = RemoteFile(requests, StarvedPipe(), size=1000)
    with pytest.raises(MemoryError):
        remote.readinto(bytearray(100))
    assert remote.out_of_memory
    asked = requests.tell()
    with pytest.raises(OSError, match="out of step"):
        remote.readinto(bytearray(100))
    assert requests.tell() == asked, "a pipe left half read is out of step: no request may follow"


def test_a_child_that_exited_after_pyav_printed_a_memory_error_went_over_its_memory() -> None:
    stderr = io.BytesIO(
        b"PyAV library exception being dropped:\nTraceback (most recent call last):\n"
        b'  File "ingest/probe_process.py", line 221, in _read_exact\n'
        b"    chunk = pipe.read(n - len(data))\nMemoryError\n"
    )
    with pytest.raises(SandboxExceeded) as exceeded:
        exit_verdict(0, True, Sandbox(memory_bytes=256 << 20, cpu_s=120, wall_s=600.0), stderr)  # type: ignore[arg-type]
    assert exceeded.value.limit == "memory"
