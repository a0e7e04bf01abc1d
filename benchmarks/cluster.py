"""Scale-out under faults: the job worker on a two-node local Ray cluster against a single-process worker.

Run from the repository root with no arguments: ``python -m benchmarks.cluster`` (about 5 minutes on 2 cores,
plus about a minute the first time to encode the recordings). The inputs are built here and cached in the temp
folder: ``RECORDINGS`` sample recordings (``proctor.samples``: real faces, 640x480 15 fps H.264) of
``DURATION_S`` seconds each. Each run gets its own ``SESSIONS`` sessions of the same recordings, uploaded (and so
queued) through the platform API, before its worker starts; the database is SQLite and the object store a real
SeaweedFS behind a fixed address (``tests.support.s3_outage``), so it can be stopped and started again.

Runs, one after the other, on the same sessions:

a. single: ``proctor worker`` with a Ray of its own (one node, started in its process) and one actor;
b. cluster: ``proctor worker`` through ``ray://`` on a two-node cluster (``ray start`` twice, 1 CPU each, token
   authentication on: ``tests.support.ray_cluster``) with two actors. Inside the measured run the second node
   is killed once ``KILL_AFTER`` sessions are processed and one is part-way (a new node then joins, as a cluster
   operator would replace it), and the S3 server is stopped for ``OUTAGE_S`` once ``OUTAGE_AFTER`` are.

Both workers run with the same settings (``SETTINGS``: 10 s chunks, the worker's own S3 calls waiting out the
outage). A run's wall time is from its first job's claim to its last session's processing, read from the
sessions' state history; rtf is seconds of recording per wall second. ``vs_single`` is the single run's wall time
over the cluster's. ``lost`` counts sessions not processed, ``doubled`` those processed but not with exactly one
set of results (one run of segments in the database and in storage), over both runs. The last line is
``RESULT cluster nodes=2 sessions=<n> vs_single=<..> lost=<n> doubled=<n>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and shadow the packages of the same name;
# put this checkout first instead, so a worktree measures its own code and not an installed copy.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from benchmarks.procstat import machine
from core.tables import StateChange
from proctor.samples import build_sample_session
from tests.support.cluster_run import Tally, progress, start_worker, stop_worker, tally, upload, worker_env
from tests.support.platform import Api
from tests.support.ray_cluster import LocalRayCluster
from tests.support.s3_outage import RestartableS3, platform_on_restartable_s3

RECORDINGS = 3
SESSIONS = 12  # per run: each recording uploaded SESSIONS / RECORDINGS times
DURATION_S = 90
KILL_AFTER = 3  # sessions processed before the second node is killed
OUTAGE_AFTER = 6  # ... before the S3 server stops
OUTAGE_S = 10.0
RUN_TIMEOUT_S = 600.0
SETTINGS = {"chunk_s": "10", "s3_retries": "8"}
TARGETS = {"vs_single": 1.6, "lost": 0, "doubled": 0}

log = logging.getLogger("cluster")


@dataclass(frozen=True)
class Run:
    what: str
    nodes: int
    actors: int
    sessions: int
    wall_s: float
    tally: Tally
    faults: str

    @property
    def rtf(self) -> float:
        return self.sessions * DURATION_S / self.wall_s


def recordings() -> list[Path]:
    """The sample recordings, built once and kept in the temp folder."""
    cache = Path(tempfile.gettempdir()) / "proctor-bench-cluster"
    paths = []
    for seed in range(RECORDINGS):
        folder = cache / f"{DURATION_S}s-seed{seed}"
        video = folder / "sample_session.mp4"
        if not video.exists():
            folder.mkdir(parents=True, exist_ok=True)
            build_sample_session(folder, duration_s=DURATION_S, seed=seed, with_events=False)
        paths.append(video)
    return paths


def wall_s(api: Api, sids: list[str]) -> float:
    """From the first session's claim (queued -> processing) to the last one's processing (-> processed)."""
    with api.context.db() as db:
        ours = StateChange.session_id.in_(sids)
        start = db.scalar(select(func.min(StateChange.at)).where(ours, StateChange.to_state == "processing"))
        end = db.scalar(select(func.max(StateChange.at)).where(ours, StateChange.to_state == "processed"))
    assert start is not None and end is not None, "the run processed nothing"
    return (end - start).total_seconds()


def run(
    api: Api,
    sids: list[str],
    env: dict[str, str],
    log_path: Path,
    faults: list[tuple[int, Callable[[], None]]],
) -> float:
    """Start a worker on the queued `sids`, inject each fault once that many sessions are processed and another
    is part-way, and return when all are processed (the worker stopped)."""
    worker = start_worker(env, log_path)
    pending = sorted(faults, key=lambda fault: fault[0])
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while (now := progress(api, sids)).processed < len(sids):
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode}); see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not done after {RUN_TIMEOUT_S:.0f} s ({now}); see {log_path}")
            if pending and now.processed >= pending[0][0] and now.part_way:
                pending.pop(0)[1]()
            time.sleep(0.05)
    finally:
        stop_worker(worker)
    if pending:
        raise RuntimeError(f"{len(pending)} faults were never injected: the sessions went too fast")
    return wall_s(api, sids)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    print(machine())
    videos = recordings()
    batch = [videos[i % RECORDINGS] for i in range(SESSIONS)]
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    print(f"work folder (logs): {work}")
    runs: list[Run] = []
    with platform_on_restartable_s3(work) as (s3, api):
        assert s3.location is not None
        single = upload(api, batch, "bench-single")
        env = worker_env(api, s3.location, None, {}, workers="1", **SETTINGS)
        seconds = run(api, single, env, work / "single.log", [])
        runs.append(Run("single: own Ray, 1 node, 1 actor", 1, 1, SESSIONS, seconds, tally(api, single), "none"))

        with LocalRayCluster(nodes=2) as cluster:
            sids = upload(api, batch, "bench-cluster")
            joining: list[threading.Thread] = []

            def kill_a_node() -> None:
                cluster.kill(cluster.workers[0])
                joining.append(threading.Thread(target=cluster.add_node, name="replacement-node"))
                joining[-1].start()

            env = worker_env(api, s3.location, cluster.client_address, cluster.env, workers="2", **SETTINGS)
            faults = [(KILL_AFTER, kill_a_node), (OUTAGE_AFTER, lambda: outage(s3))]
            seconds = run(api, sids, env, work / "cluster.log", faults)
            for thread in joining:
                thread.join()
            note = f"node killed (a new one joined), S3 down {OUTAGE_S:.0f} s"
            runs.append(Run("cluster: ray://, 2 nodes, 2 actors", 2, 2, SESSIONS, seconds, tally(api, sids), note))
    report(runs)


def outage(s3: RestartableS3) -> None:
    s3.stop()
    time.sleep(OUTAGE_S)
    s3.start()


def report(runs: list[Run]) -> None:
    print()
    print("| run | nodes | actors | sessions | video s | wall s | rtf | processed | lost | doubled | faults |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r.what} | {r.nodes} | {r.actors} | {r.sessions} | {r.sessions * DURATION_S} | {r.wall_s:.1f} | "
            f"{r.rtf:.1f} | {r.tally.processed} | {r.tally.lost} | {r.tally.doubled} | {r.faults} |"
        )
    single, cluster = runs
    vs_single = single.wall_s / cluster.wall_s
    lost = sum(r.tally.lost for r in runs)
    doubled = sum(r.tally.doubled for r in runs)
    met = {
        "vs_single": vs_single >= TARGETS["vs_single"],
        "lost": lost <= TARGETS["lost"],
        "doubled": doubled <= TARGETS["doubled"],
    }
    print()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs (a shared box)")
    print("targets: " + "; ".join(f"{k} {'met' if ok else 'missed'} (target {TARGETS[k]})" for k, ok in met.items()))
    print(f"RESULT cluster nodes=2 sessions={SESSIONS} vs_single={vs_single:.2f} lost={lost} doubled={doubled}")


if __name__ == "__main__":
    main()
