"""Ingest throughput and memory: the API path against a raw minio put to the same S3 server.

Builds a 50 MB and a 500 MB H.264 recording, starts the embedded S3 server and, for each size, a fresh
`proctor serve` process (so its peak RSS, read from /proc VmHWM, belongs to that upload alone). Then it
uploads the 500 MB file through the API (`proctor ingest`'s client: parts, resume bookkeeping, complete
with size + SHA-256 verification and the PyAV probe) and through `minio.fput_object`, alternating, and
reports median throughputs and their ratio, with the CPU seconds the client, the API process and the
S3 server each spent. The machines here have 2 cores shared by all three, so it then repeats the rounds
with the S3 server pinned to one core and the client and API to the other (production's layout, where
storage runs elsewhere); that ratio is printed for comparison, the RESULT line keeps the shared one.

Run: python benchmarks/ingest.py        Last line: RESULT ingest ratio=... rss_mb_50=... rss_mb_500=...
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and `benchmarks/ingest.py` would shadow the
# `ingest` package; put this checkout first instead, so a worktree measures its own code.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from minio import Minio

from benchmarks.procstat import cpu_seconds, machine, peak_rss_mb
from ingest.client import IngestClient, upload_session
from proctor.local_server import free_port
from proctor.samples import write_filler_video
from storage.embedded_s3 import EmbeddedS3

MB = 1_000_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def pin(pid: int, cpus: set[int]) -> None:
    """Restrict every thread of a process to ``cpus`` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


@dataclass
class Round:
    """One upload: wall seconds and the CPU seconds each process spent on it."""

    wall_s: float
    client_cpu_s: float
    api_cpu_s: float
    s3_cpu_s: float

    @property
    def total_cpu_s(self) -> float:
        return self.client_cpu_s + self.api_cpu_s + self.s3_cpu_s


def measured(upload: Callable[[], float], api_pid: int | None, s3_pid: int) -> Round:
    client, api, s3 = time.process_time(), cpu_seconds(api_pid) if api_pid else 0.0, cpu_seconds(s3_pid)
    wall = upload()
    return Round(
        wall,
        time.process_time() - client,
        cpu_seconds(api_pid) - api if api_pid else 0.0,
        cpu_seconds(s3_pid) - s3,
    )


class ApiProcess:
    """`proctor serve` in its own process, pointed at the benchmark's S3 server and database."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = env | {"PROCTOR_API_PORT": str(self.port), "PROCTOR_LOG_LEVEL": "warning"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proctor.cli", "serve"], env=self.env, stdout=subprocess.DEVNULL
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


@dataclass(frozen=True)
class Alternating:
    """API and raw uploads of one file, alternating, each measured with the CPU of every process."""

    url: str
    key: str
    video: Path
    raw: Minio
    bucket: str
    api_pid: int
    s3_pid: int

    def rounds(self) -> tuple[list[Round], list[Round]]:
        api: list[Round] = []
        raw: list[Round] = []
        for _ in range(ROUNDS):
            api.append(measured(lambda: api_upload(self.url, self.key, self.video), self.api_pid, self.s3_pid))
            raw.append(measured(lambda: raw_upload(self.raw, self.bucket, self.video), None, self.s3_pid))
        return api, raw


def median_round(rounds: list[Round]) -> Round:
    return sorted(rounds, key=lambda r: r.wall_s)[len(rounds) // 2]


def main() -> None:
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as work_dir:
        work = Path(work_dir)
        t0 = time.perf_counter()
        videos = {size: write_filler_video(work / f"rec-{size}.mp4", size * MB) for size in (50, 500)}
        print(
            f"built test recordings in {time.perf_counter() - t0:.0f} s: "
            + ", ".join(f"{v.stat().st_size / MB:.0f} MB" for v in videos.values())
        )
        s3_server = EmbeddedS3(work / "data", "bench")
        with s3_server as s3:
            assert s3_server.pid is not None
            s3_pid = s3_server.pid
            env = os.environ | {
                "PROCTOR_DATA_DIR": str(work / "data"),
                "PROCTOR_S3_ENDPOINT": s3.endpoint,
                "PROCTOR_S3_ACCESS_KEY": s3.access_key,
                "PROCTOR_S3_SECRET_KEY": s3.secret_key,
                "PROCTOR_S3_BUCKET": s3.bucket,
                "PROCTOR_DATABASE_URL": f"sqlite:///{work / 'data' / 'bench.db'}",
            }
            added = subprocess.run(
                [sys.executable, "-m", "proctor.cli", "tenants", "add", "bench-platform"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            key = added.stdout.strip().splitlines()[-1]
            raw = Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False)

            rss: dict[int, float] = {}
            api_runs: list[Round] = []
            raw_runs: list[Round] = []
            pinned_api: list[Round] = []
            pinned_raw: list[Round] = []
            can_pin = len(os.sched_getaffinity(0)) >= 2
            for size, video in videos.items():
                server = ApiProcess(env)
                url = f"http://127.0.0.1:{server.port}"
                try:
                    if size == 50:
                        api_upload(url, key, video)
                        continue
                    alternate = Alternating(url, key, video, raw, s3.bucket, server.process.pid, s3_pid)
                    api_runs, raw_runs = alternate.rounds()
                    if can_pin:  # production's layout: the S3 server on its own CPU, the API and client on another
                        cpus = sorted(os.sched_getaffinity(0))
                        pin(s3_pid, {cpus[1]})
                        pin(server.process.pid, {cpus[0]})
                        pin(os.getpid(), {cpus[0]})
                        pinned_api, pinned_raw = alternate.rounds()
                        pin(os.getpid(), set(cpus))
                        pin(s3_pid, set(cpus))
                finally:
                    rss[size] = server.stop()

        size_mb = videos[500].stat().st_size / MB
        api, rawm = median_round(api_runs), median_round(raw_runs)
        ratio = rawm.wall_s / api.wall_s
        print()
        print(f"{size_mb:.0f} MB file, {ROUNDS} rounds alternating; CPU in core-seconds during the median round")
        print(f"{'path':<58} {'median s':>9} {'MB/s':>7} {'client':>7} {'API':>6} {'S3':>6} {'cores':>6}   runs")
        rows = [
            ("API (parts + complete: sha256 verify, probe)", api, api_runs),
            ("raw minio fput_object, same server", rawm, raw_runs),
        ]
        if pinned_api:
            rows += [
                ("API, S3 server pinned to its own core", median_round(pinned_api), pinned_api),
                ("raw, S3 server pinned to its own core", median_round(pinned_raw), pinned_raw),
            ]
        for label, r, runs in rows:
            print(
                f"{label:<58} {r.wall_s:>9.2f} {size_mb / r.wall_s:>7.1f} {r.client_cpu_s:>7.2f} {r.api_cpu_s:>6.2f} "
                f"{r.s3_cpu_s:>6.2f} {r.total_cpu_s / r.wall_s:>6.2f}   {', '.join(f'{x.wall_s:.2f}' for x in runs)}"
            )
        print(f"ratio API / raw: {ratio:.2f} (target >= 0.8), all processes sharing {os.cpu_count()} cores")
        if pinned_api:
            pinned_ratio = median_round(pinned_raw).wall_s / median_round(pinned_api).wall_s
            print(f"ratio with the S3 server on its own core (not the RESULT): {pinned_ratio:.2f}")
        print()
        print(f"{'file':<10} {'API process peak RSS (MB)':>26}")
        for size in (50, 500):
            print(f"{size:>4} MB    {rss[size]:>26.0f}")
        print("target: flat and under 300 MB")
        print(f"RESULT ingest ratio={ratio:.2f} rss_mb_50={rss[50]:.0f} rss_mb_500={rss[500]:.0f}")


if __name__ == "__main__":
    main()
