"""Killing a worker process mid-job still ends with exactly one result.

A real worker process (the `proctor worker` loop: `Worker.run_forever` with the settings read from the
environment) claims an uploaded session with a short lease and is SIGKILLed while it analyses chunks.
A second worker takes the job over once the lease lapses. The fan-out is `LocalFanout` (the same
`ChunkWorker` Ray runs) so the test does not pay for a Ray cluster per process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from core.settings import Settings
from core.tables import ExamSession, FlagSegment, Job
from ingest.client import upload_session
from pipelines.fanout import LocalFanout
from pipelines.jobs import JobQueue, QueuePolicy
from pipelines.worker import Worker
from proctor.processing import analysis_config, worker_config
from proctor.samples import SampleSession, build_sample_session
from storage.keys import SessionPrefix
from storage.object_store import S3Location
from tests.support.platform import Api

pytestmark = [pytest.mark.slow, pytest.mark.serial]

LEASE_S = 3.0
CHUNK_S = 5.0
ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import threading
from storage.embedded_s3 import s3_location
from core.context import build_context
from core.settings import Settings
from pipelines.fanout import LocalFanout
from pipelines.worker import Worker
from proctor.processing import analysis_config, worker_config
from proctor.wiring import configured_s3, job_queue

settings = Settings()
with s3_location(configured_s3(settings), settings.data_dir, settings.s3_bucket) as location:
    context = build_context(settings, location)
    fanout = LocalFanout(analysis_config(settings), context.location)
    queue = job_queue(context)
    Worker(context.db, context.store, fanout, queue, worker_config(settings), worker_id="doomed").run_forever(
        threading.Event()
    )
"""


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("faults"), duration_s=40, seed=9)


def worker_env(settings: Settings, s3: S3Location) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PROCTOR_DATABASE_URL": settings.resolved_database_url,
        "PROCTOR_DATA_DIR": str(settings.data_dir),
        "PROCTOR_S3_ENDPOINT": s3.endpoint,
        "PROCTOR_S3_ACCESS_KEY": s3.access_key,
        "PROCTOR_S3_SECRET_KEY": s3.secret_key,
        "PROCTOR_S3_BUCKET": s3.bucket,
        "PROCTOR_JOB_LEASE_S": str(LEASE_S),
        "PROCTOR_CHUNK_S": str(CHUNK_S),
        "PROCTOR_WORKER_POLL_S": "0.2",
    }


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if process.poll() is not None:
            raise AssertionError(f"the worker exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        time.sleep(0.02)


@pytest.mark.timeout(300)
def test_a_killed_worker_leaves_exactly_one_result(api: Api, sample: SampleSession, tmp_path: Path) -> None:
    _, key = api.tenant()
    with api.client(key) as client:
        sid = upload_session(client, webcam=sample.video_path, exam_id="exam-kill", candidate_id="c")["id"]
    ctx = api.context

    def job() -> Job:
        with ctx.db() as db:
            row = db.scalars(select(Job).where(Job.session_id == sid)).one()
            db.expunge(row)
            return row

    def chunks_done() -> int:
        with ctx.db() as db:
            row = db.get(ExamSession, sid)
            return row.chunks_done if row is not None and row.chunks_done else 0

    log = (tmp_path / "doomed.log").open("wb")
    doomed = subprocess.Popen(
        [sys.executable, "-c", WORKER], env=worker_env(ctx.settings, ctx.location), stdout=log, stderr=log
    )
    try:
        wait_for("it holds the lease", lambda: job().lease_owner == "doomed", 120, doomed)
        wait_for("it analysed a chunk", lambda: chunks_done() >= 1, 60, doomed)
        doomed.send_signal(signal.SIGKILL)
        assert doomed.wait(10) == -signal.SIGKILL
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)
        log.close()
    killed = job()
    assert killed.state == "running" and killed.lease_owner == "doomed" and killed.attempts == 1, (
        "the worker was killed mid-job, holding the lease"
    )

    # What a worker killed between writing its results and the database swap leaves in storage.
    with ctx.db() as db:
        session = db.get(ExamSession, sid)
        assert session is not None and session.results_prefix is None
        prefix = SessionPrefix(session.tenant.slug, session.exam.external_id, session.id)
    results_root = prefix.key("results") + "/"
    orphan = prefix.key("results", "v1", "killedrun") + "/"
    ctx.store.put_bytes(orphan + "signals.npz", b"half a run", content_type="application/octet-stream")

    queue = JobQueue(ctx.db, QueuePolicy(lease_s=LEASE_S))
    fanout = LocalFanout(analysis_config(ctx.settings), ctx.location)
    survivor = Worker(ctx.db, ctx.store, fanout, queue, worker_config(ctx.settings), worker_id="survivor")
    deadline = time.monotonic() + LEASE_S + 30
    while not survivor.run_one():
        assert time.monotonic() < deadline, "the lapsed lease was never taken over"
        time.sleep(0.2)

    final = job()
    assert (final.state, final.lease_owner, final.attempts) == ("done", None, 2)
    with ctx.db() as db:
        session = db.get(ExamSession, sid)
        assert session is not None and session.state == "processed"
        results = session.results_prefix
        segments = db.scalars(select(FlagSegment).where(FlagSegment.session_id == sid)).all()
    assert results is not None and results.startswith(results_root) and results != orphan
    stored = json.loads(b"".join(ctx.store.iter_chunks(results + "segments.json")))
    assert len(segments) == len(stored["segments"]) >= 1, "one set of segments: the survivor's"
    assert len({(s.kind, s.start_ms) for s in segments}) == len(segments)
    assert all(k.startswith(results) for s in segments for k in s.evidence_keys)
    keys = [info.key for info in ctx.store.list_objects(results_root)]
    assert keys and all(k.startswith(results) for k in keys), f"one results prefix in storage, found {keys}"
