"""SIGTERM to a worker process mid-job (a rolling update) hands the job back: lease released, no attempt spent.

The worker process runs the `proctor worker` loop with its signal handling (`stop_on_signals`); the fan-out
is `LocalFanout` (the same `ChunkWorker` Ray runs), so the test does not pay for a Ray cluster per process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from core.tables import ExamSession, Job
from ingest.client import upload_session
from proctor.samples import SampleSession, build_sample_session
from tests.support.platform import Api

pytestmark = [pytest.mark.slow, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
from core.context import build_context
from core.settings import Settings
from pipelines.fanout import LocalFanout
from pipelines.worker import Worker
from proctor.process_cli import stop_on_signals
from proctor.processing import analysis_config, worker_config
from proctor.wiring import configured_s3, job_queue
from storage.embedded_s3 import s3_location

settings = Settings()
stop = stop_on_signals()
with s3_location(configured_s3(settings), settings.data_dir, settings.s3_bucket) as location:
    context = build_context(settings, location)
    fanout = LocalFanout(analysis_config(settings), context.location)
    worker = Worker(context.db, context.store, fanout, job_queue(context), worker_config(settings), worker_id="rolled")
    worker.run_forever(stop)
"""


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("stop"), duration_s=24, seed=6)


@pytest.mark.timeout(300)
def test_sigterm_mid_job_hands_the_job_back(api: Api, sample: SampleSession, tmp_path: Path) -> None:
    _, key = api.tenant()
    with api.client(key) as client:
        sid = upload_session(client, webcam=sample.video_path, exam_id="exam-stop", candidate_id="c")["id"]
    ctx = api.context
    s3 = ctx.location
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PROCTOR_DATABASE_URL": ctx.settings.resolved_database_url,
        "PROCTOR_DATA_DIR": str(ctx.settings.data_dir),
        "PROCTOR_S3_ENDPOINT": s3.endpoint,
        "PROCTOR_S3_ACCESS_KEY": s3.access_key,
        "PROCTOR_S3_SECRET_KEY": s3.secret_key,
        "PROCTOR_S3_BUCKET": s3.bucket,
        "PROCTOR_CHUNK_S": "2",
        "PROCTOR_WORKER_POLL_S": "0.2",
        "PROCTOR_WORKER_STOP_GRACE_S": "0",  # nothing is near enough its end to be finished
    }

    def job() -> Job:
        with ctx.db() as db:
            row = db.scalars(select(Job).where(Job.session_id == sid)).one()
            db.expunge(row)
            return row

    def chunks_done() -> int:
        with ctx.db() as db:
            row = db.get(ExamSession, sid)
            return row.chunks_done if row is not None and row.chunks_done else 0

    log = (tmp_path / "worker.log").open("wb")
    rolled = subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not (job().lease_owner == "rolled" and chunks_done() >= 1):
            assert rolled.poll() is None, f"the worker exited ({rolled.returncode}) before analysing a chunk"
            assert time.monotonic() < deadline, "the worker never got to its first chunk"
            time.sleep(0.05)
        rolled.send_signal(signal.SIGTERM)
        assert rolled.wait(15) == 0, "it stops cleanly, at once"
        handed_back = job()
        assert (handed_back.state, handed_back.lease_owner, handed_back.attempts) == ("queued", None, 0)
        with ctx.db() as db:
            session = db.get(ExamSession, sid)
            assert session is not None and session.state == "queued"
    finally:
        if rolled.poll() is None:
            rolled.kill()
            rolled.wait(10)
        log.close()
        with ctx.db() as db:  # the PostgreSQL queue is shared by the run: leave no claimable job behind
            db.execute(delete(Job).where(Job.session_id == sid))
            db.commit()
