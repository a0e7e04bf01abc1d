"""`proctor serve` stopped as systemd or `docker stop` stop it leaves no SeaweedFS server behind.

Each test starts the real command in a subprocess on a free port with its own data directory (so it
starts its own embedded S3 server), waits until the API answers, and signals it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proctor.local_server import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_until(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting until {what}"
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A running `proctor serve` and its SeaweedFS child's pid."""
    port = free_port()
    data = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROCTOR_")} | {
        "PROCTOR_DATA_DIR": str(data),
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "proctor.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=log,
    )
    weed: int | None = None
    try:
        wait_until("the API answers", lambda: serve.poll() is None and answers(f"http://127.0.0.1:{port}/healthz"), 90)
        weed = int(json.loads((data / "s3" / "server.json").read_text())["pid"])
        assert alive(weed)
        yield serve, weed
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(10)
        if weed is not None and alive(weed):
            os.killpg(weed, signal.SIGKILL)
        log.close()


@pytest.mark.timeout(180)
def test_sigterm_stops_the_embedded_s3_server(served: tuple[subprocess.Popen[bytes], int]) -> None:
    serve, weed = served
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(30) == -signal.SIGTERM, "uvicorn re-raises the signal once it has shut down"
    wait_until("the SeaweedFS server has exited", lambda: not alive(weed), 5)


@pytest.mark.timeout(180)
def test_a_killed_server_takes_the_embedded_s3_server_with_it(served: tuple[subprocess.Popen[bytes], int]) -> None:
    """SIGKILL runs no shutdown at all: the S3 server is tied to its parent's life by the kernel."""
    serve, weed = served
    serve.send_signal(signal.SIGKILL)
    assert serve.wait(10) == -signal.SIGKILL
    wait_until("the SeaweedFS server has exited", lambda: not alive(weed), 30)
