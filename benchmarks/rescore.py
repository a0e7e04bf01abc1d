"""The re-score of one exam of 100 processed sessions, for `benchmarks/review_ui.py`.

Builds the exam in the benchmark's database and embedded S3: 100 sessions of `BENCH_RESCORE_SESSION_S` (an hour by
default, like the review benchmark's sessions) at the pipeline's 5 sampled frames a second, each with its signals
stored as processing stores them (`signals.npz`, the face descriptors apart in `descriptors.npz`) and the flags
the default policy gives them. Ten signal scripts (a candidate who now and then leaves, turns away or has someone
beside them) are spread over the sessions; every session is still read and segmented on its own.

Then an officer, over HTTP, previews a change (sensitivity 2, a looking-away yaw tolerance of 35 degrees: every
kind's flags move) and applies it; one `Worker` in this process runs the 100 `RESCORE` jobs. The re-score time is
from the apply's request to the last job's end: what one `proctor worker` takes (N workers share the jobs).
"""

from __future__ import annotations

import io
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, insert, select

from core.context import AppContext
from core.exam_policy import ExamPolicy
from core.rescoring import StoredRun
from core.tables import Exam, ExamSession, FlagSegment, FlagVersion, Job, Media, Tenant
from core.vocabulary import JobKind, JobState
from detectors import SIGNAL_COLUMNS, Signals
from detectors.face_analysis import DESCRIPTOR_COLUMNS
from pipelines.jobs import JobQueue
from pipelines.rescore import StoredSignalsRescorer
from pipelines.worker import Worker
from review_ui.policies import PREVIEW_SESSIONS, form_values
from storage.keys import SessionPrefix

SESSIONS = 100
SCRIPTS = 10
SESSION_S = float(os.environ.get("BENCH_RESCORE_SESSION_S", "3600"))
FRAME_MS = 200
CHANGE = ExamPolicy.from_json({"sensitivity": 2.0, "looking_away": {"yaw_deg": 35}})


@dataclass(frozen=True)
class RescoreTiming:
    preview_s: float
    previewed: int
    rescore_s: float
    sessions: int
    changed: int  # sessions whose flags the change changed


def scripted_signals(seed: int, duration_s: float) -> Signals:
    """A candidate at the screen, but for episodes of no face, of a second face and of looking away; every
    detector column the pipeline stores, a face descriptor every 2.4 s."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * 1000 / FRAME_MS)
    columns = {c: np.full(n, np.nan) for c in (*SIGNAL_COLUMNS["face_analysis"], *SIGNAL_COLUMNS["quality"])}
    faces = np.ones(n)
    for count, episodes in ((0.0, n // 600), (2.0, n // 1800)):
        for start in rng.integers(0, n - 60, episodes):
            faces[start : start + rng.integers(5, 60)] = count
    seen = faces > 0
    yaw = rng.normal(0, 3, n)
    for start in rng.integers(0, n - 60, n // 450):
        yaw[start : start + rng.integers(5, 60)] = rng.uniform(28, 45)
    columns |= {"face_count": faces, "covered": np.zeros(n), "too_dark": np.zeros(n), "too_blurry": np.zeros(n)}
    for name, centre, spread in (("face_size_px", 120, 2), ("face_x_px", 320, 4), ("face_y_px", 240, 4)):
        columns[name] = np.where(seen, centre + rng.normal(0, spread, n), np.nan)
        columns["gaze_" + name] = columns[name]
    for name, values in (("head_yaw_deg", yaw), ("head_pitch_deg", rng.normal(0, 3, n))):
        columns[name] = columns[name.replace("_deg", "_coarse_deg")] = np.where(seen, values, np.nan)
    for name in ("eye_gaze_h", "eye_gaze_v"):
        columns[name] = np.where(seen, rng.normal(0, 0.04, n), np.nan)
    person = rng.normal(0, 0.1, len(DESCRIPTOR_COLUMNS))
    sampled = np.flatnonzero(seen & (np.arange(n) % 12 == 0))
    for j, name in enumerate(DESCRIPTOR_COLUMNS):
        columns[name][sampled] = person[j] + rng.normal(0, 0.01, len(sampled))
    return Signals(np.arange(n, dtype=np.int64) * FRAME_MS, columns)


def _npz(timestamps_ms: np.ndarray, columns: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, timestamps_ms=timestamps_ms, **columns)
    return buffer.getvalue()


def stored_objects(signals: Signals) -> tuple[bytes, bytes]:
    """(`signals.npz`, `descriptors.npz`) as processing writes them: descriptors apart, on their frames only."""
    plain = {c: v for c, v in signals.columns.items() if c not in DESCRIPTOR_COLUMNS}
    rows = np.flatnonzero(np.isfinite(signals[DESCRIPTOR_COLUMNS[0]]))
    faces = {c: signals[c][rows] for c in DESCRIPTOR_COLUMNS}
    return _npz(signals.timestamps_ms, plain), _npz(signals.timestamps_ms[rows], faces)


def build_exam(context: AppContext, tenant_slug: str) -> str:
    """The exam of `SESSIONS` processed sessions with stored signals and their flags; its id."""
    duration_ms = round(SESSION_S * 1000)
    with context.db() as db:
        tenant_id = db.scalar(select(Tenant.id).where(Tenant.slug == tenant_slug))
        assert tenant_id is not None
        exam = Exam(tenant_id=tenant_id, external_id="exam-rescore", title="re-score benchmark", policy={})
        db.add(exam)
        db.commit()
        exam_id = exam.id
    scripts = []
    rescorer = StoredSignalsRescorer(context.store)
    for seed in range(SCRIPTS):
        signals, descriptors = stored_objects(scripted_signals(seed, SESSION_S))
        key = f"bench/rescore-script-{seed}/"
        context.store.put_bytes(key + "signals.npz", signals)
        context.store.put_bytes(key + "descriptors.npz", descriptors)
        segments, risk = rescorer.segments(StoredRun("script", key, duration_ms, None), ExamPolicy())
        scripts.append((signals, descriptors, segments, risk))
    now = datetime.now(UTC)
    probe = {
        "container": "webm", "codec": "vp8", "duration_s": SESSION_S, "frame_rate": 30.0, "width": 640,
        "height": 480, "rotation_deg": 0, "has_audio": True, "keyframe_interval_s": 2.0,
    }  # fmt: skip
    sessions: list[dict[str, Any]] = []
    media: list[dict[str, Any]] = []
    flags: list[dict[str, Any]] = []
    for i in range(SESSIONS):
        signals, descriptors, segments, risk = scripts[i % SCRIPTS]
        session_id = uuid.uuid4().hex
        results = SessionPrefix(tenant_slug, "exam-rescore", session_id).key("results", "v2", "bench") + "/"
        context.store.put_bytes(results + "signals.npz", signals)
        context.store.put_bytes(results + "descriptors.npz", descriptors)
        sessions.append(
            {
                "id": session_id, "tenant_id": tenant_id, "exam_id": exam_id, "candidate_id": f"r{i}",
                "attempt_id": f"r{i}", "started_at": now - timedelta(hours=2), "state": "processed",
                "duration_s": SESSION_S, "created_at": now, "updated_at": now, "chunks_done": 120, "chunks_total": 120,
                "risk_score": risk, "review_priority": "high", "pipeline_version": "2",
                "processed_at": now - timedelta(minutes=i), "results_prefix": results,
            }
        )  # fmt: skip
        media.append(
            {
                "id": uuid.uuid4().hex, "session_id": session_id, "kind": "webcam", "object_key": f"b/{session_id}",
                "content_type": "video/webm", "declared_size": 10**8, "declared_sha256": "0" * 64,
                "part_size": 8 << 20, "state": "complete", "probe": probe,
            }
        )  # fmt: skip
        flags += [
            {
                "id": uuid.uuid4().hex, "session_id": session_id, "kind": seg.kind.value, "start_ms": seg.start_ms,
                "end_ms": seg.end_ms, "score": seg.score, "peak_ms": seg.peak_ms, "evidence_keys": [],
                "detector_versions": {"face_analysis": "bench"}, "pipeline_version": "2", "created_at": now,
                "source": "detector", "details": dict(seg.details) or None,
            }
            for seg in segments
        ]  # fmt: skip
    with context.db() as db:
        for table, rows in ((ExamSession, sessions), (Media, media), (FlagSegment, flags)):
            db.execute(insert(table), rows)
        db.commit()
    return exam_id


def rescore_exam(context: AppContext, officer: httpx.Client, exam_id: str) -> RescoreTiming:
    """Preview and apply `CHANGE` as an officer does, then run the re-scoring jobs with one worker."""
    page = officer.get(f"/review/exams/{exam_id}/policy")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert page.status_code == 200 and token is not None, page.status_code
    form = {"csrf_token": token[1], **{k: v for k, v in form_values(CHANGE).items() if v}}
    started = time.perf_counter()
    preview = officer.post(f"/review/exams/{exam_id}/policy/preview", data=form, headers={"Accept": "application/json"})
    preview_s = time.perf_counter() - started
    assert preview.status_code == 200, preview.text
    started = time.perf_counter()
    applied = officer.post(f"/review/exams/{exam_id}/policy", data=form)
    assert applied.status_code == 303, applied.text
    worker = Worker(context.db, context.store, None, JobQueue(context.db))  # type: ignore[arg-type]  # never decodes
    while worker.run_one():
        pass
    rescore_s = time.perf_counter() - started
    with context.db() as db:
        exam_sessions = select(ExamSession.id).where(ExamSession.exam_id == exam_id)
        done = db.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.session_id.in_(exam_sessions), Job.kind == JobKind.RESCORE.value, Job.state == JobState.DONE.value
            )
        )
        changed = db.scalar(
            select(func.count()).select_from(FlagVersion).where(FlagVersion.session_id.in_(exam_sessions))
        )
    assert done == SESSIONS, f"{done} of {SESSIONS} re-scoring jobs done"
    return RescoreTiming(preview_s, min(SESSIONS, PREVIEW_SESSIONS), rescore_s, SESSIONS, int(changed or 0))
