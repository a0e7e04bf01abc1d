"""`proctor worker` with PROCTOR_WORKER_METRICS_PORT, as a supervisor runs it: live from the start, ready once its
Ray fan-out is up, metrics on the same port, and the port closed when SIGTERM stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proctor.local_server import free_port
from storage.object_store import S3Location

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


@pytest.mark.timeout(300)
def test_the_worker_serves_its_probes_and_metrics_on_its_port(s3: S3Location, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCTOR_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PROCTOR_DATA_DIR": str(tmp_path),
        "PROCTOR_S3_ENDPOINT": s3.endpoint,
        "PROCTOR_S3_ACCESS_KEY": s3.access_key,
        "PROCTOR_S3_SECRET_KEY": s3.secret_key,
        "PROCTOR_S3_BUCKET": s3.bucket,
        "PROCTOR_WORKERS": "1",
        "PROCTOR_WORKER_POLL_S": "0.5",
        "PROCTOR_WORKER_METRICS_PORT": str(port),
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "proctor.cli", "worker"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while (ready := get(f"{base}/readyz")) is None or ready.status_code != 200:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"never ready: {ready.text if ready else 'no answer'}"
            if ready is not None:  # up, its fan-out still starting: live, not ready, and it says why
                assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
                live = get(f"{base}/healthz")
                assert live is not None and live.status_code == 200
            time.sleep(0.5)
        metrics = get(f"{base}/metrics")
        assert metrics is not None and 'proctor_queue_jobs{state="queued"}' in metrics.text
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        assert get(f"{base}/healthz") is None, "the port is closed with the worker"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()
