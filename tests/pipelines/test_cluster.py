"""`proctor worker` on a real two-node Ray cluster, through `ray://` and through the GCS address, while nodes, the
object store and the head fail: every session ends `processed` with exactly one set of results.

The cluster is two `ray start` process trees with token authentication on (`tests.support.ray_cluster`); the
object store is a real SeaweedFS behind a fixed address (`RestartableS3`), so it can be stopped and started again
on the same data; the database is SQLite, shared with the platform API that queues the sessions as uploads
complete. The worker is the `proctor worker` command in a process of its own, configured by `PROCTOR_*` variables
only. Each phase uploads sessions, waits until one of them has analysed some but at most half of its chunks,
injects one fault, and waits for every session to be processed. Select these tests with `-m cluster`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proctor.samples import SampleSession, build_sample_session
from tests.support.cluster_run import Tally, progress, start_worker, stop_worker, tally, upload, worker_env
from tests.support.platform import Api
from tests.support.ray_cluster import LocalRayCluster
from tests.support.s3_outage import RestartableS3, platform_on_restartable_s3

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.serial]

SESSIONS_PER_PHASE = 2
OUTAGE_S = 10.0
SETTINGS = {
    "workers": "2",
    "chunk_s": "2",
    "sample_fps": "15",  # every frame: chunks long enough that a fault lands while actors still have work
    "s3_retries": "8",  # the worker's own reads and writes wait out a 10 s outage (>= 25 s of retries)
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    # 36 s: 18 chunks, and three flagged segments, so "one set of results" is not an empty one
    return build_sample_session(tmp_path_factory.mktemp("cluster"), duration_s=36, seed=5)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[RestartableS3, Api]]:
    with platform_on_restartable_s3(tmp_path) as running:
        yield running


@pytest.fixture
def cluster() -> Iterator[LocalRayCluster]:
    with LocalRayCluster(nodes=2) as running:
        yield running


@pytest.fixture
def worker(
    tmp_path: Path, platform: tuple[RestartableS3, Api], cluster: LocalRayCluster
) -> Iterator[Callable[[str], tuple[subprocess.Popen[bytes], Path]]]:
    """Starts `proctor worker` against `cluster` at the address given; stopped before the cluster is."""
    s3, api = platform
    started: list[subprocess.Popen[bytes]] = []

    def start(address: str) -> tuple[subprocess.Popen[bytes], Path]:
        assert s3.location is not None
        log = tmp_path / f"worker-{len(started)}.log"
        started.append(start_worker(worker_env(api, s3.location, address, cluster.env, **SETTINGS), log))
        return started[-1], log

    yield start
    for process in started:
        stop_worker(process)


def wait_for(
    what: str, check: Callable[[], bool], timeout_s: float, worker: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.returncode}) before {what}; its log ends:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{timeout_s:.0f} s passed and not {what}; the worker's log ends:\n{tail(log)}")
        time.sleep(0.05)


def tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def phase(
    api: Api,
    sample: SampleSession,
    name: str,
    fault: Callable[[], None],
    worker: subprocess.Popen[bytes],
    log: Path,
) -> None:
    """Upload sessions, inject `fault` once one is part-way (half its chunks to go); wait until all are processed."""
    sids = upload(api, [sample.video_path] * SESSIONS_PER_PHASE, f"exam-{name}")
    wait_for(f"a session of phase {name} was part-way", lambda: progress(api, sids).part_way, 90, worker, log)
    fault()
    done = len(sids)
    wait_for(
        f"every session of phase {name} was processed", lambda: progress(api, sids).processed == done, 120, worker, log
    )
    assert tally(api, sids) == Tally(processed=done, lost=0, doubled=0), f"phase {name}: results lost or doubled"


@pytest.mark.timeout(180)
def test_through_ray_client_a_lost_node_a_storage_outage_and_a_head_restart_lose_nothing(
    platform: tuple[RestartableS3, Api],
    cluster: LocalRayCluster,
    worker: Callable[[str], tuple[subprocess.Popen[bytes], Path]],
    sample: SampleSession,
) -> None:
    s3, api = platform
    process, log = worker(cluster.client_address)

    phase(api, sample, "node", lambda: cluster.kill(cluster.workers[0]), process, log)
    cluster.add_node()  # what the cluster's operator does next; the pending replacement actor starts there

    def outage() -> None:
        s3.stop()
        time.sleep(OUTAGE_S)
        s3.start()

    phase(api, sample, "storage", outage, process, log)
    # by now for sure (the dead actor's slot gets a chunk at the latest in this phase's first session)
    assert "fan-out actor died" in log.read_text(), "the killed node's actor was found dead and replaced"
    assert '"failed": "storage"' in log.read_text(), "the actors waited the outage out"
    phase(api, sample, "head", cluster.restart, process, log)
    assert "reconnected to the ray cluster" in log.read_text()
    assert process.poll() is None, "the worker went on through every fault"


@pytest.mark.timeout(120)
def test_through_the_gcs_address_a_lost_node_loses_nothing(
    platform: tuple[RestartableS3, Api],
    cluster: LocalRayCluster,
    worker: Callable[[str], tuple[subprocess.Popen[bytes], Path]],
    sample: SampleSession,
) -> None:
    _, api = platform
    process, log = worker(cluster.gcs_address)
    phase(api, sample, "gcs-node", lambda: cluster.kill(cluster.workers[0]), process, log)
    phase(api, sample, "gcs-after", lambda: None, process, log)
    # Not asserted here: that the killed node's actor was seen dead. Whether it held or next got a chunk depends on
    # where Ray placed the replacement and which slot went idle first (a fresh clone's CI run once saw neither in
    # these two phases). What matters is asserted by `phase`: every session processed exactly once.
    assert process.poll() is None
