"""The Ray fan-out heals: an actor that dies on a chunk is replaced and the chunk retried; a chunk that keeps
killing actors fails as the recording's fault, naming the chunk, and the pool goes on serving.

The actors run `CrashingWorker`, which dies with `os._exit` (as a decoder that segfaults would) on one chosen
chunk while that recording's crash budget lasts. The budget is a file beside the test run, since each death
takes the actor's memory with it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from core.tables import ExamSession, Job
from detectors import Signals
from ingest.client import upload_session
from pipelines.analysis import AnalysisConfig
from pipelines.decode import Chunk, plan_chunks
from pipelines.fanout import ChunkFailed, ChunkWorker, RayFanout, RayOptions
from pipelines.jobs import JobQueue
from pipelines.worker import Worker, WorkerConfig
from proctor.samples import SampleSession, build_sample_session
from storage.object_store import S3Location
from storage.presigned_reader import PresignedObject
from tests.pipelines.conftest import stored_recording
from tests.support.platform import Api

pytestmark = [pytest.mark.slow, pytest.mark.serial]

DOOMED = 1  # the chunk that kills its actor


def crash_budget(key: str) -> Path:
    return Path(tempfile.gettempdir()) / f"proctor-crash-budget-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class CrashingWorker(ChunkWorker):
    def analyze(self, recording: PresignedObject, chunk: Chunk) -> tuple[int, Signals | str]:
        budget = crash_budget(recording.key)
        if chunk.index == DOOMED and budget.exists():
            left = int(budget.read_text())
            if left > 0:
                budget.write_text(str(left - 1))
                os._exit(1)
        return super().analyze(recording, chunk)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("heal"), duration_s=12, seed=4)


@pytest.fixture
def recording(s3: S3Location, sample: SampleSession) -> Iterator[str]:
    key = stored_recording(s3, sample.video_path, "t-heal")
    yield key
    crash_budget(key).unlink(missing_ok=True)


@pytest.mark.timeout(300)
def test_a_chunk_that_kills_its_actor_is_retried_on_a_fresh_one(
    ray_cluster: None, s3: S3Location, recording: str
) -> None:
    crash_budget(recording).write_text("2")  # two deaths: under the limit of three
    chunks = plan_chunks(12_000, 2000, 4000)
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=2, max_chunk_crashes=3), worker=CrashingWorker)
    try:
        signals = fanout.analyze(recording, chunks)
        assert len(signals) == len(chunks) and all(len(s) for s in signals)
        assert crash_budget(recording).read_text() == "0", "it died twice, and was replaced each time"
        again = fanout.analyze(recording, chunks)  # the pool is whole: both actors serve the next call
        assert [len(s) for s in again] == [len(s) for s in signals]
    finally:
        fanout.close()


@pytest.mark.timeout(300)
def test_a_chunk_that_keeps_killing_actors_fails_naming_the_chunk(
    ray_cluster: None, s3: S3Location, recording: str
) -> None:
    crash_budget(recording).write_text("100")
    chunks = plan_chunks(12_000, 2000, 4000)
    doomed = chunks[DOOMED]
    fanout = RayFanout(AnalysisConfig(), s3, RayOptions(workers=2, max_chunk_crashes=3), worker=CrashingWorker)
    try:
        with pytest.raises(ChunkFailed) as failed:
            fanout.analyze(recording, chunks)
        assert failed.value.chunk == doomed
        assert str(failed.value).startswith(
            f"chunk {DOOMED} ({doomed.start_ms / 1000:.1f}-{doomed.end_ms / 1000:.1f} s): the analysis process "
            "died on it 3 times"
        )
        assert crash_budget(recording).read_text() == "97", "exactly three deaths, then no more tries"
        crash_budget(recording).unlink()
        healed = fanout.analyze(recording, chunks)  # every actor it killed was replaced
        assert len(healed) == len(chunks)
    finally:
        fanout.close()


@pytest.mark.timeout(300)
def test_a_job_whose_chunk_keeps_killing_actors_fails_once_without_a_retry(
    ray_cluster: None, api: Api, sample: SampleSession
) -> None:
    """The actors' deaths spend none of the job's attempts; the chunk's third one fails it, for good, naming the
    session and the chunk."""
    _, key = api.tenant()
    with api.client(key) as client:
        sid = upload_session(client, webcam=sample.video_path, exam_id="exam-heal", candidate_id="c")["id"]
    ctx = api.context
    with ctx.db() as db:
        session = db.get(ExamSession, sid)
        assert session is not None
        webcam_key = next(m.object_key for m in session.media if m.kind == "webcam")
    crash_budget(webcam_key).write_text("100")
    fanout = RayFanout(AnalysisConfig(), ctx.location, RayOptions(workers=2), worker=CrashingWorker)
    try:
        worker = Worker(ctx.db, ctx.store, fanout, JobQueue(ctx.db), WorkerConfig(chunk_target_ms=4000), "w-heal")
        assert worker.run_one(sid)
        with ctx.db() as db:
            job = db.scalars(select(Job).where(Job.session_id == sid)).one()
            session = db.get(ExamSession, sid)
            assert session is not None
            assert (job.state, job.attempts, job.lease_owner) == ("failed", 1, None)
            assert job.last_error is not None
            assert job.last_error.startswith(f"session {sid}: chunk {DOOMED} (")
            assert "died on it 3 times" in job.last_error
            assert session.state == "failed" and session.reason == job.last_error
            db.execute(delete(Job).where(Job.session_id == sid))
            db.commit()
    finally:
        fanout.close()
        crash_budget(webcam_key).unlink(missing_ok=True)
