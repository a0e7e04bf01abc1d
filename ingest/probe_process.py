"""Run the media probe in a child process under memory, CPU and time limits, so no upload can take the API down.

FFmpeg parses whatever a platform uploads. A file can declare tens of millions of samples (FFmpeg's MP4 demuxer
builds its whole sample index in memory while it opens the file), or take minutes of CPU to demux. In the API
process that is an out-of-memory kill of every request in flight; in a child it is one refused upload. The child
runs under `RLIMIT_AS` (memory), `RLIMIT_CPU` and no core dumps, and the parent kills it after a wall-clock limit.

The child never touches storage. When the source is a stream (the upload service reads the object from S3 through
its hashing reader), the parent serves the child's reads from it over a pipe, so the bytes still pass once through
whatever the caller wrapped around storage and nothing is copied to disk. The wall-clock limit counts the child's
own time, not the time the parent waits on storage: a slow object store is not the file's fault, and a storage
error raised by the reader reaches the caller unchanged.

The pipe protocol. Parent to child: one frame holding the pickled `(request, path or None, size, sandbox)`, then a
frame of bytes (empty at the end of the file) for each read request. Child to parent: messages of a one-byte tag,
a four-byte little-endian length and a payload: `K` (ready: limits applied, about to read), `R` (read: offset and
length, `<QI`) and `A` (the answer, JSON). The child's answer is JSON, never pickle: the child handles hostile
input, and nothing it sends can run code in the parent.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, NoReturn

from storage.sized_reader import SizedReader

GIB = 1024**3
MAX_READ = 1024 * 1024  # the most the parent hands the child in one reply
_MAX_ANSWER = 1024 * 1024  # an answer is a few hundred bytes of JSON; more means a broken child
_HEADER = struct.Struct("<cI")
_READ = struct.Struct("<QI")
_FRAME = struct.Struct("<I")

Limit = Literal["memory", "cpu", "time"]


@dataclass(frozen=True)
class Sandbox:
    """The limits one probe runs under. The defaults leave room for a 4096x4096 recording's first frames and
    the index of a six-hour recording at 120 fps, and stop a file that declares far more."""

    memory_bytes: int = GIB  # address space of the whole child: ~120 MiB of it is Python and FFmpeg themselves
    cpu_s: int = 120
    wall_s: float = 600.0  # the child's own time: waiting on storage for the parent does not count

    def __post_init__(self) -> None:
        if self.memory_bytes < 256 * 1024 * 1024:
            raise ValueError(
                f"a probe needs at least 256 MiB of address space (Python and FFmpeg take ~120 MiB), got "
                f"{self.memory_bytes} bytes"
            )
        if self.cpu_s < 1 or self.wall_s <= 0:
            raise ValueError(f"need cpu_s >= 1 and wall_s > 0, got {self.cpu_s} and {self.wall_s}")


class SandboxExceeded(Exception):
    """The child went over one of its limits: the input costs more than the sandbox allows."""

    def __init__(self, limit: Limit, detail: str) -> None:
        super().__init__(f"{limit}: {detail}")
        self.limit = limit
        self.detail = detail


class SandboxCrashed(Exception):
    """The child died of a signal while it read the input (FFmpeg crashed on it)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"the probe process died of {signal_name}")
        self.signal_name = signal_name


class SandboxBroken(RuntimeError):
    """The child failed for a reason that is not its input: it could not start, broke the protocol, or the probe
    code raised. A server fault, not a verdict on the upload; the message carries the child's last words."""


def run_sandboxed(module: str, request: Any, source: Path | BinaryIO, size: int, sandbox: Sandbox) -> dict[str, Any]:
    """Run `python -m module` under `sandbox` on `source` and return its JSON answer.

    `module` calls `child_main` with its handler. A stream `source` is read (and seeked) only by this thread,
    while the child asks for bytes; any error the stream raises propagates after the child is killed.
    """
    path = str(source) if isinstance(source, Path) else None
    with tempfile.TemporaryFile() as stderr:
        started = time.monotonic()  # the child's start-up counts against its time limit too
        child = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            bufsize=0,  # unbuffered: a buffered reader could hold a message that `poll` then waits for
            env=os.environ | {"MALLOC_ARENA_MAX": "2"},  # glibc reserves 64 MiB of address space per arena
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            return _serve(child, stderr, pickle.dumps((request, path, size, sandbox)), source, sandbox, started)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdin.close()
            child.stdout.close()


def _serve(
    child: subprocess.Popen[bytes],
    stderr: IO[bytes],
    request: bytes,
    source: Path | BinaryIO,
    sandbox: Sandbox,
    started: float,
) -> dict[str, Any]:
    assert child.stdin is not None and child.stdout is not None
    to_child, from_child = child.stdin, child.stdout
    waiting_on_source, ready = 0.0, False
    poller = select.poll()
    poller.register(from_child, select.POLLIN)
    try:
        _send(to_child, request)
        while True:
            left_s = sandbox.wall_s - (time.monotonic() - started - waiting_on_source)
            if left_s <= 0 or not poller.poll(left_s * 1000):
                child.kill()
                raise SandboxExceeded("time", f"still running after {sandbox.wall_s:g} s")
            header = _read_exact(from_child, _HEADER.size)
            if header is None:
                break  # the child exited without an answer: its exit status says why
            tag, length = _HEADER.unpack(header)
            if length > _MAX_ANSWER:
                raise SandboxBroken(f"the probe process sent a {length}-byte message: it broke the protocol")
            payload = _read_exact(from_child, length)
            if payload is None:
                break
            if tag == b"K":
                ready = True
            elif tag == b"R" and ready and not isinstance(source, Path) and length == _READ.size:
                offset, wanted = _READ.unpack(payload)
                reading = time.monotonic()
                if source.tell() != offset:
                    source.seek(offset)
                data = source.read(min(wanted, MAX_READ))
                waiting_on_source += time.monotonic() - reading
                _send(to_child, data)
            elif tag == b"A" and ready:
                return _verdict(_parsed(payload), sandbox)
            else:
                raise SandboxBroken(f"the probe process broke the protocol (message {tag!r} of {length} bytes)")
    except BrokenPipeError:
        pass  # the child died while the parent wrote to it
    try:
        status = child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        raise SandboxBroken("the probe process closed its output but did not exit") from None
    exit_verdict(status, ready, sandbox, stderr)


def _parsed(payload: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise SandboxBroken(f"the probe process answered {payload[:200]!r}, not a JSON object")
    return answer


def _verdict(answer: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
    if answer.get("exceeded") == "memory":
        raise SandboxExceeded("memory", f"needed more than {sandbox.memory_bytes / GIB:.2f} GiB")
    if "failed" in answer:
        raise SandboxBroken(f"the probe raised in its process: {str(answer['failed'])[-2000:]}")
    return answer


def exit_verdict(status: int, ready: bool, sandbox: Sandbox, stderr: IO[bytes]) -> NoReturn:
    """Why a child that exited without an answer did: always raises (a limit exceeded, a crash, or a broken
    sandbox), from its exit status and the tail of its stderr."""
    if not ready:
        raise SandboxBroken(
            f"the probe process exited ({status}) before it started: {_tail(stderr)}; check that this Python can "
            "import PyAV, and that PROCTOR_PROBE_MEMORY_BYTES leaves room for it"
        )
    if status in (-signal.SIGXCPU, -signal.SIGKILL):  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard
        raise SandboxExceeded("cpu", f"used more than {sandbox.cpu_s} s of CPU")
    if status < 0:
        raise SandboxCrashed(signal.Signals(-status).name)
    tail = _tail(stderr)
    if tail.rstrip().endswith("MemoryError"):
        # PyAV drops an exception raised in its read callback and prints it: the child ran out of memory there.
        raise SandboxExceeded("memory", f"needed more than {sandbox.memory_bytes / GIB:.2f} GiB: {tail[-300:]}")
    raise SandboxBroken(f"the probe process exited ({status}) without an answer: {tail}")


def _tail(stderr: IO[bytes]) -> str:
    stderr.seek(0, io.SEEK_END)
    stderr.seek(max(0, stderr.tell() - 2000))
    return stderr.read().decode(errors="replace").strip() or "no output"


def _send(pipe: IO[bytes], data: bytes) -> None:
    pipe.write(_FRAME.pack(len(data)))
    pipe.write(data)
    pipe.flush()


def _read_exact(pipe: IO[bytes], n: int) -> bytes | None:
    """`n` bytes, or None at the end of the pipe (the writer is gone)."""
    data = b""
    while len(data) < n:
        chunk = pipe.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def near_memory_limit(sandbox: Sandbox) -> bool:
    """In the child: whether its address space has come within a quarter of its limit. FFmpeg reports a failed
    allocation as whatever error the code that needed it returns (a decoder says "Invalid data"), so a failure
    at the ceiling is taken as the memory limit's, not the file's."""
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmPeak:"))
    return peak_kib * 1024 > 0.75 * sandbox.memory_bytes


# -- the child ------------------------------------------------------------------------------------------


class RemoteFile(SizedReader):
    """The parent's stream, read through the pipe. Seeking is local: only reads cross the pipe."""

    def __init__(self, requests: IO[bytes], replies: IO[bytes], size: int) -> None:
        self._requests, self._replies, self._size, self._pos = requests, replies, size, 0
        # A read ran out of memory. PyAV drops an exception raised in its read callback, so the handler may
        # return as if the file ended; the answer must still be the memory limit. The reply it was reading is
        # left half read in the pipe, so no further read is asked for.
        self.out_of_memory = False

    def readinto(self, buffer: Any) -> int:
        if self.out_of_memory:
            raise OSError("an earlier read ran out of memory: the pipe is out of step")
        wanted = min(len(buffer), self._size - self._pos, MAX_READ)
        if wanted <= 0:
            return 0
        _message(self._requests, b"R", _READ.pack(self._pos, wanted))
        try:
            length = _read_exact(self._replies, _FRAME.size)
            data = _read_exact(self._replies, _FRAME.unpack(length)[0]) if length is not None else None
        except MemoryError:
            self.out_of_memory = True
            raise
        if data is None:
            raise OSError("the parent process closed the pipe")
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _message(pipe: IO[bytes], tag: bytes, payload: bytes) -> None:
    pipe.write(_HEADER.pack(tag, len(payload)) + payload)
    pipe.flush()


def child_main(handler: Callable[[Path | BinaryIO, Any], dict[str, Any]]) -> None:
    """The child's side: read the request, apply the limits, answer `handler(source, request)` as JSON.

    `handler` returns a JSON-able dict. A `MemoryError` (Python's, or FFmpeg's ENOMEM raised as one by the
    handler) answers `{"exceeded": "memory"}`; any other exception answers `{"failed": traceback}`.
    """
    # The protocol keeps its own copies of stdin and stdout; anything else that writes to fd 1 (a library's
    # stray print) goes to stderr instead of corrupting the protocol.
    replies = os.fdopen(os.dup(0), "rb", buffering=0)
    requests = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    length = _read_exact(replies, _FRAME.size)
    frame = _read_exact(replies, _FRAME.unpack(length)[0]) if length is not None else None
    if frame is None:
        return  # the parent went away before sending the request
    request, path, size, sandbox = pickle.loads(frame)  # from the parent, which is trusted
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (sandbox.cpu_s, sandbox.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (sandbox.memory_bytes, sandbox.memory_bytes))
    _message(requests, b"K", b"")
    remote = RemoteFile(requests, replies, size) if path is None else None
    source: Path | BinaryIO = Path(path) if remote is None else io.BufferedReader(remote, MAX_READ)
    try:
        answer = handler(source, request)
    except MemoryError:
        answer = {"exceeded": "memory"}
    except Exception:
        answer = {"failed": traceback.format_exc(limit=-8)}
    if remote is not None and remote.out_of_memory:
        answer = {"exceeded": "memory"}
    _message(requests, b"A", json.dumps(answer).encode())
