"""Processed sessions without the detectors: signals written from a script of episodes, stored where the pipeline
stores them, and the flags the pipeline's own last step (`segment_session`) gives them, as processing would
leave them. What re-scoring reads is then exactly what a processing run leaves behind, at no decoding cost.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.context import AppContext
from core.db import utcnow
from core.exam_policy import ExamPolicy
from core.rescoring import stored_run
from core.states import SessionState
from core.tables import Exam, ExamSession, FlagSegment, Media, Tenant
from core.vocabulary import MediaKind, MediaState
from detectors import Signals
from pipelines.analysis import PIPELINE_VERSION
from pipelines.decode import Chunk
from pipelines.jobs import JobQueue
from pipelines.process import review_priority
from pipelines.rescore import StoredSignalsRescorer
from pipelines.worker import Worker
from storage.keys import SessionPrefix

FRAME_MS = 200  # the pipeline's 5 sampled frames per second
Episode = tuple[float, float]  # (start_s, end_s)


def episode_signals(
    duration_s: float, *, no_face: Sequence[Episode] = (), two_faces: Sequence[Episode] = ()
) -> Signals:
    """A candidate at the screen throughout, but for the episodes with no face or with a second face."""
    ts = np.arange(round(duration_s * 1000 / FRAME_MS), dtype=np.int64) * FRAME_MS
    faces = np.ones(len(ts))
    for count, episodes in ((0.0, no_face), (2.0, two_faces)):
        for start_s, end_s in episodes:
            faces[(ts >= start_s * 1000) & (ts < end_s * 1000)] = count
    seen = np.where(faces > 0, 0.0, np.nan)  # looking straight at the screen whenever a face is seen
    columns = {"face_count": faces, "covered": np.zeros(len(ts)), "too_dark": np.zeros(len(ts))}
    columns |= {c: seen.copy() for c in ("head_yaw_deg", "head_pitch_deg", "eye_gaze_h", "eye_gaze_v")}
    return Signals(ts, columns)


def store_processed_session(
    context: AppContext,
    tenant_id: str,
    exam_id: str,
    signals: Signals,
    *,
    candidate_id: str | None = None,
    state: SessionState = SessionState.PROCESSED,
) -> str:
    """A session of `exam_id` (the platform's id; the exam is created if new) processed under its exam's policy:
    its signals in `signals.npz` under a results prefix, its detector flags and risk in the database."""
    duration_ms = int(signals.timestamps_ms[-1]) + FRAME_MS
    with context.db() as db:
        tenant = db.get(Tenant, tenant_id)
        assert tenant is not None
        exam = next((e for e in db.query(Exam).filter_by(tenant_id=tenant_id, external_id=exam_id)), None)
        if exam is None:
            exam = Exam(tenant_id=tenant_id, external_id=exam_id, policy={})
            db.add(exam)
            db.flush()
        session = ExamSession(
            tenant_id=tenant_id, exam_id=exam.id, candidate_id=candidate_id or f"cand-{uuid.uuid4().hex[:6]}",
            attempt_id=uuid.uuid4().hex[:8], started_at=datetime(2026, 11, 20, 9, tzinfo=UTC), state=state.value,
            duration_s=duration_ms / 1000, pipeline_version=PIPELINE_VERSION, processed_at=utcnow(),
        )  # fmt: skip
        db.add(session)
        db.flush()
        prefix = SessionPrefix(tenant.slug, exam_id, session.id)
        session.results_prefix = prefix.key("results", f"v{PIPELINE_VERSION}", uuid.uuid4().hex) + "/"
        probe = {
            "container": "webm", "codec": "vp8", "duration_s": duration_ms / 1000, "frame_rate": 25.0, "width": 640,
            "height": 480, "rotation_deg": 0, "has_audio": False, "keyframe_interval_s": 2.0,
        }  # fmt: skip
        db.add(
            Media(
                session_id=session.id, kind=MediaKind.WEBCAM.value, object_key=prefix.key("media", "webcam"),
                content_type="video/webm", declared_size=1, declared_sha256="0" * 64, part_size=5 << 20,
                state=MediaState.COMPLETE.value, probe=probe, completed_at=utcnow(),
            )
        )  # fmt: skip
        buffer = io.BytesIO()
        np.savez_compressed(buffer, timestamps_ms=signals.timestamps_ms, **dict(signals.columns))
        context.store.put_bytes(session.results_prefix + "signals.npz", buffer.getvalue())
        db.flush()
        db.refresh(session)
        run = stored_run(db, session)
        assert run is not None
        segments, risk = StoredSignalsRescorer(context.store).segments(run, ExamPolicy.from_json(exam.policy))
        db.add_all(
            FlagSegment(
                session_id=session.id, kind=seg.kind.value, start_ms=seg.start_ms, end_ms=seg.end_ms, score=seg.score,
                peak_ms=seg.peak_ms, evidence_keys=[], detector_versions={"face_analysis": "test"},
                pipeline_version=PIPELINE_VERSION, details=dict(seg.details) or None,
            )
            for seg in segments
        )  # fmt: skip
        session.risk_score, session.review_priority = risk, review_priority(risk).value
        db.commit()
        return session.id


class NoDecoding:
    """The worker's fan-out, which a re-scoring must never reach."""

    def versions(self) -> dict[str, str]:
        return {}

    def analyze(self, key: str, chunks: Sequence[Chunk], *_: Any, **__: Any) -> list[Signals]:
        raise AssertionError(f"a re-scoring decoded {key}")


def run_queued_jobs(context: AppContext, session_id: str) -> int:
    """What `proctor worker` does with the session's jobs, here and now: run them until none is left; how many ran."""
    worker = Worker(context.db, context.store, NoDecoding(), JobQueue(context.db))
    ran = 0
    while worker.run_one(session_id):
        ran += 1
    return ran
