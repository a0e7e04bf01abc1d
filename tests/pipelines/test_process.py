"""An uploaded session processed from object storage, with results that a re-run replaces."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.db import utcnow
from core.tables import ExamSession, FlagSegment, Job
from core.vocabulary import FlagKind, ReviewPriority
from detectors import AwayConfig
from ingest.client import upload_session
from pipelines.analysis import AnalysisConfig, segment_session
from pipelines.fanout import LocalFanout
from pipelines.jobs import ClaimedJob, JobQueue, LeaseLost
from pipelines.process import Run, load_signals, process_session, publish_results, review_priority
from pipelines.segments import ExamPolicy, KindPolicy
from pipelines.worker import Worker
from proctor import wiring
from proctor.samples import SampleSession, build_sample_session
from storage.keys import SessionPrefix
from storage.object_store import ObjectStoreError
from tests.support.platform import Api


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("process"), duration_s=36, seed=5)


def uploaded(api: Api, sample: SampleSession, exam_id: str) -> tuple[str, str]:
    """The sample uploaded through the API by a new tenant: (tenant id, session id)."""
    tenant_id, key = api.tenant()
    with api.client(key) as client:
        return tenant_id, upload_session(client, webcam=sample.video_path, exam_id=exam_id, candidate_id="c")["id"]


def test_processing_stores_segments_evidence_and_signals_and_reruns_replace(api: Api, sample: SampleSession) -> None:
    _, sid = uploaded(api, sample, "exam-p")
    ctx = api.context
    fanout = LocalFanout(AnalysisConfig(), ctx.location)
    seen: list[tuple[int, int]] = []
    first = process_session(
        ctx.db, ctx.store, fanout, sid, chunk_target_ms=12_000, on_progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (3, 3)
    assert {s.kind for s in first.segments} >= {FlagKind.MULTIPLE_FACES}
    with ctx.db() as db:
        row = db.get(ExamSession, sid)
        assert row is not None and row.chunks_done == row.chunks_total == 3
        assert row.risk_score == first.risk and row.review_priority == review_priority(first.risk)
        stored = db.scalars(select(FlagSegment).where(FlagSegment.session_id == sid)).all()
        assert len(stored) == len(first.segments)
        assert all(s.evidence_keys and s.detector_versions for s in stored)
        two = [s for s in stored if s.kind == FlagKind.MULTIPLE_FACES]  # each flag says why it fired
        assert two and all(s.details and s.details["frames_showing"] >= 1 and s.details["trace"] for s in two)
        strip = row.thumbnails
        assert strip is not None and strip["key"].startswith(first.results_prefix) and strip["count"] >= 1
    assert b"".join(ctx.store.iter_chunks(strip["key"]))[:2] == b"\xff\xd8", "the thumbnail strip is a JPEG"
    for seg in stored:
        assert len(seg.evidence_keys) == len(set(seg.evidence_keys))
        for key in seg.evidence_keys:
            jpeg = b"".join(ctx.store.iter_chunks(key))
            assert jpeg[:2] == b"\xff\xd8", "evidence is a JPEG"
    longest = max(stored, key=lambda s: s.end_ms - s.start_ms)
    assert longest.end_ms - longest.start_ms >= 2000 and len(longest.evidence_keys) >= 2  # peak, then start or end

    second = process_session(ctx.db, ctx.store, fanout, sid, chunk_target_ms=12_000)
    with ctx.db() as db:
        count = db.scalar(select(func.count()).select_from(FlagSegment).where(FlagSegment.session_id == sid))
    assert count == len(second.segments) == len(first.segments), "a re-run replaces, never duplicates"
    assert list(ctx.store.list_objects(first.results_prefix)) == [], "the previous run's objects are gone"

    signals = load_signals(ctx.store, second.results_prefix)
    stored_objects = {o.key.rsplit("/", 1)[-1] for o in ctx.store.list_objects(second.results_prefix)}
    assert {"signals.npz", "descriptors.npz", "segments.json"} <= stored_objects, "face descriptors kept apart"
    assert np.isfinite(signals["face_descriptor_000"]).sum() >= 2, "descriptors put back on their frames"
    quiet = ExamPolicy(kinds={FlagKind.MULTIPLE_FACES: KindPolicy(enabled=False)})
    rescored, _ = segment_session(signals, quiet, AwayConfig(), duration_ms=36_000)
    assert FlagKind.MULTIPLE_FACES not in {s.kind for s in rescored}


def test_a_worker_that_lost_its_lease_cannot_publish_results(api: Api, sample: SampleSession) -> None:
    """A slow worker whose job was taken over finishes its analysis, but its results are refused and removed."""
    _, sid = uploaded(api, sample, "exam-fence")
    ctx = api.context
    queue = JobQueue(ctx.db)
    slow = queue.claim("slow", sid)
    assert slow is not None
    with ctx.db() as db:  # the slow worker stopped heartbeating in time
        db.execute(update(Job).where(Job.id == slow.id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    fresh = queue.claim("fresh", sid)
    assert fresh is not None and fresh.id == slow.id
    fanout = LocalFanout(AnalysisConfig(), ctx.location)

    with pytest.raises(LeaseLost):
        process_session(ctx.db, ctx.store, fanout, sid, on_publish=lambda db: queue.complete(db, slow, "slow"))
    with ctx.db() as db:
        row = db.get(ExamSession, sid)
        assert row is not None and row.results_prefix is None
        assert db.scalar(select(func.count()).select_from(FlagSegment).where(FlagSegment.session_id == sid)) == 0
        session_prefix = SessionPrefix(row.tenant.slug, row.exam.external_id, sid)
    results_root = session_prefix.key("results") + "/"
    assert list(ctx.store.list_objects(results_root)) == [], "the refused run deleted what it wrote"

    done = process_session(ctx.db, ctx.store, fanout, sid, on_publish=lambda db: queue.complete(db, fresh, "fresh"))
    assert done.results_prefix.startswith(results_root) and list(ctx.store.list_objects(done.results_prefix))
    with ctx.db() as db:
        row = db.get(ExamSession, sid)
        assert row is not None and row.state == "processed" and row.results_prefix == done.results_prefix
        job = db.get(Job, fresh.id)
        assert job is not None and job.state == "done", "the job completes in the transaction that publishes"


def test_results_published_while_a_session_is_erased_are_refused(api: Api, sample: SampleSession) -> None:
    """A worker that publishes while DELETE is erasing the session's objects must not leave results behind:
    the erasure fails the job first, so the publication waits for it and then fails its lease check."""
    tenant_id, sid = uploaded(api, sample, "exam-erase")
    ctx = api.context
    queue = JobQueue(ctx.db)
    job = queue.claim("w", sid)
    assert job is not None
    refused: list[BaseException] = []

    def publish() -> None:  # the worker's last step, as `process_session` runs it
        try:
            run = Run([], [], {}, 0.0, ReviewPriority.LOW, "elsewhere/", 1, {})
            publish_results(ctx.db, sid, run, lambda db: queue.complete(db, job, "w"))
        except BaseException as exc:
            refused.append(exc)

    erase_objects = ctx.store.delete_prefix
    racing = threading.Thread(target=publish)

    def delete_prefix_while_the_worker_publishes(prefix: str) -> int:
        racing.start()
        racing.join(timeout=1.0)  # blocked on the job row (or SQLite's write lock) until the erasure commits
        return erase_objects(prefix)

    ctx.store.delete_prefix = delete_prefix_while_the_worker_publishes  # type: ignore[method-assign]
    try:
        assert wiring.uploads(ctx).delete(tenant_id, sid).state == "deleted"
    finally:
        ctx.store.delete_prefix = erase_objects  # type: ignore[method-assign]
    racing.join(timeout=30)
    assert len(refused) == 1 and isinstance(refused[0], LeaseLost)
    with ctx.db() as db:
        row = db.get(ExamSession, sid)
        assert row is not None and row.state == "deleted" and row.results_prefix is None


def test_a_stale_run_that_cannot_be_deleted_does_not_fail_the_new_one(api: Api, sample: SampleSession) -> None:
    """Once the new results are published, deleting the previous run's objects is housekeeping: a storage
    error there is logged, and the run, already committed, stands (the next run deletes the leftovers)."""
    _, sid = uploaded(api, sample, "exam-stale")
    ctx = api.context
    fanout = LocalFanout(AnalysisConfig(), ctx.location)
    first = process_session(ctx.db, ctx.store, fanout, sid)
    erase_objects = ctx.store.delete_prefix

    def storage_down(prefix: str) -> int:
        raise ObjectStoreError(f"S3 SlowDown deleting {prefix}")

    ctx.store.delete_prefix = storage_down  # type: ignore[method-assign]
    try:
        second = process_session(ctx.db, ctx.store, fanout, sid)
    finally:
        ctx.store.delete_prefix = erase_objects  # type: ignore[method-assign]
    with ctx.db() as db:
        row = db.get(ExamSession, sid)
        assert row is not None and row.results_prefix == second.results_prefix != first.results_prefix
    assert list(ctx.store.list_objects(first.results_prefix)), "left for the next run"
    third = process_session(ctx.db, ctx.store, fanout, sid)
    assert list(ctx.store.list_objects(first.results_prefix)) == []
    assert list(ctx.store.list_objects(second.results_prefix)) == [] and third.results_prefix != second.results_prefix


class FlakyClaims(JobQueue):
    """A queue whose first claim fails as a database restart would; the second stops the worker."""

    def __init__(self, db: sessionmaker[Session], stop: threading.Event) -> None:
        super().__init__(db)
        self.stop, self.claims = stop, 0

    def claim(self, worker_id: str, session_id: str | None = None) -> ClaimedJob | None:
        self.claims += 1
        if self.claims == 1:
            raise OperationalError("SELECT jobs ...", {}, Exception("server closed the connection unexpectedly"))
        self.stop.set()
        return None


def test_a_worker_outlives_a_database_error_between_jobs(api: Api) -> None:
    stop = threading.Event()
    queue = FlakyClaims(api.context.db, stop)
    fanout = LocalFanout(AnalysisConfig(), api.context.location)
    worker = Worker(api.context.db, api.context.store, fanout, queue, worker_id="w")
    worker.run_forever(stop)
    assert queue.claims == 2


def test_a_flag_shows_its_peak_then_its_start_and_end_when_they_are_apart() -> None:
    from pipelines.process import evidence_moments
    from pipelines.segments import FlagKind, Segment

    long = Segment(FlagKind.LOOKING_AWAY, 10_000, 16_000, 0.8, 12_000)
    assert evidence_moments(long) == [12_000, 10_500, 15_500]
    short = Segment(FlagKind.NO_FACE, 10_000, 11_200, 0.9, 10_600)
    assert evidence_moments(short) == [10_600]
    peak_at_start = Segment(FlagKind.NO_FACE, 10_000, 14_000, 0.9, 10_200)
    assert evidence_moments(peak_at_start) == [10_200, 13_500]
