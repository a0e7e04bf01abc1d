"""Ingest throughput and memory: the API path against a raw minio put to the same S3 server.

Builds a 50 MB and a 500 MB H.264 recording, starts the embedded S3 server and, for each size, a fresh
`proctor serve` process (so its peak RSS, read from /proc VmHWM, belongs to that upload alone). Then it
uploads the 500 MB file through the API (`proctor ingest`'s client: parts, resume bookkeeping, complete
with size + SHA-256 verification and the PyAV probe) and through `minio.fput_object`, alternating, and
reports median throughputs and their ratio.

Run: python benchmarks/ingest.py        Last line: RESULT ingest ratio=... rss_mb_50=... rss_mb_500=...
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and `benchmarks/ingest.py` would shadow the
# `ingest` package; the benchmarks import the installed project instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx
from minio import Minio

from ingest.client import IngestClient, upload_session
from ingest.embedded_s3 import EmbeddedS3
from ingest.samples import write_filler_video
from pipelines.local_server import free_port

MB = 1_000_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status: this benchmark needs Linux")


class ApiProcess:
    """`proctor serve` in its own process, pointed at the benchmark's S3 server and database."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = env | {"PROCTOR_API_PORT": str(self.port), "PROCTOR_LOG_LEVEL": "warning"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve"], env=self.env, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("proctor serve did not become ready")

    def stop(self) -> float:
        rss = peak_rss_mb(self.process.pid)
        self.process.terminate()
        self.process.wait(timeout=30)
        return rss


def api_upload(url: str, key: str, video: Path) -> float:
    with IngestClient(url, key) as client:
        start = time.perf_counter()
        session = upload_session(
            client, webcam=video, exam_id="bench", candidate_id="c", attempt_id=uuid.uuid4().hex[:12]
        )
        elapsed = time.perf_counter() - start
    if session["state"] != "queued":
        raise RuntimeError(f"the API did not accept the benchmark file: {session}")
    return elapsed


def raw_upload(client: Minio, bucket: str, video: Path) -> float:
    start = time.perf_counter()
    client.fput_object(bucket, f"raw/{uuid.uuid4().hex}", str(video), part_size=16 * 1024 * 1024)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as work_dir:
        work = Path(work_dir)
        t0 = time.perf_counter()
        videos = {size: write_filler_video(work / f"rec-{size}.mp4", size * MB) for size in (50, 500)}
        print(
            f"built test recordings in {time.perf_counter() - t0:.0f} s: "
            + ", ".join(f"{v.stat().st_size / MB:.0f} MB" for v in videos.values())
        )
        with EmbeddedS3(work / "data", "bench") as s3:
            env = os.environ | {
                "PROCTOR_DATA_DIR": str(work / "data"),
                "PROCTOR_S3_ENDPOINT": s3.endpoint,
                "PROCTOR_S3_ACCESS_KEY": s3.access_key,
                "PROCTOR_S3_SECRET_KEY": s3.secret_key,
                "PROCTOR_S3_BUCKET": s3.bucket,
                "PROCTOR_DATABASE_URL": f"sqlite:///{work / 'data' / 'bench.db'}",
            }
            added = subprocess.run(
                [sys.executable, "-m", "pipelines.cli", "tenants", "add", "bench-platform"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            key = added.stdout.strip().splitlines()[-1]
            raw = Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False)

            rss: dict[int, float] = {}
            api_s: list[float] = []
            raw_s: list[float] = []
            for size, video in videos.items():
                server = ApiProcess(env)
                try:
                    rounds = ROUNDS if size == 500 else 1
                    for _ in range(rounds):
                        elapsed = api_upload(f"http://127.0.0.1:{server.port}", key, video)
                        if size == 500:
                            api_s.append(elapsed)
                            raw_s.append(raw_upload(raw, s3.bucket, video))
                finally:
                    rss[size] = server.stop()

        size_mb = videos[500].stat().st_size / MB
        api_mbps = size_mb / statistics.median(api_s)
        raw_mbps = size_mb / statistics.median(raw_s)
        ratio = api_mbps / raw_mbps
        print()
        print(f"{'path':<44} {'median s':>9} {'MB/s':>8}   runs")
        print(
            f"{'API (parts + complete: sha256 verify, probe)':<44} {statistics.median(api_s):>9.2f} "
            f"{api_mbps:>8.1f}   {', '.join(f'{s:.2f}' for s in api_s)}"
        )
        print(
            f"{'raw minio fput_object, same server':<44} {statistics.median(raw_s):>9.2f} "
            f"{raw_mbps:>8.1f}   {', '.join(f'{s:.2f}' for s in raw_s)}"
        )
        print(f"ratio API / raw: {ratio:.2f} (target >= 0.8), {size_mb:.0f} MB file, {ROUNDS} rounds alternating")
        print()
        print(f"{'file':<10} {'API process peak RSS (MB)':>26}")
        for size in (50, 500):
            print(f"{size:>4} MB    {rss[size]:>26.0f}")
        print("target: flat and under 300 MB")
        print(f"RESULT ingest ratio={ratio:.2f} rss_mb_50={rss[50]:.0f} rss_mb_500={rss[500]:.0f}")


if __name__ == "__main__":
    main()
