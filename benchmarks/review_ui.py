"""Review UI latency at scale: queue, session and exam report pages with 10,000 sessions and 100,000 flags.

Builds its own database (SQLite, the embedded default, or $BENCH_DATABASE_URL) with 10 tenants, 100 exams,
10,000 processed sessions and 100,000 flags, serves the real app (API + review UI) with uvicorn on 127.0.0.1
next to the embedded S3 server, signs a reviewer in (scoped to half the tenants) and an admin, and times
full HTTP round trips over loopback: the queue (default, filtered by flag kind, a later page), random
session pages and their thumbnail strips, and the officers' reports (the index of all exams, random exam
reports as HTML with their six SVG charts, as CSV, and each chart's CSV). The reviewed quarter of the sessions
carry a review history (upload time, decisions on their flags, a final outcome by one of two reviewers, and for the
Rules Violations a second review in the audit trail), so that the charts have real rows to count.
Target: p95 under 300 ms for every page.

Then the re-score of one exam of 100 processed sessions of an hour, from their stored signals
(`benchmarks/rescore.py`): an officer previews and applies a policy change, one worker runs the jobs.

    python benchmarks/review_ui.py  # a table, then RESULT review_ui queue_p95_ms=.. session_p95_ms=.. report_p95_ms=..
                                    # rescore_100_s=..
"""

from __future__ import annotations

import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import httpx
import numpy as np
from sqlalchemy import insert, select

from benchmarks.procstat import machine
from benchmarks.rescore import build_exam, rescore_exam
from core import audit
from core.context import build_context
from core.settings import Settings
from core.tables import (
    Exam,
    ExamSession,
    FlagDecision,
    FlagSegment,
    Media,
    ReviewOutcome,
    SessionReview,
    StateChange,
    Tenant,
)
from core.vocabulary import Role
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from review_ui.accounts import add_user, assign
from review_ui.report_metrics import METRIC_TABLES
from storage.embedded_s3 import EmbeddedS3

SESSIONS = 10_000
FLAGS = 100_000
TENANTS = 10
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "200"))
PASSWORD = "benchmark password"
KINDS = ("no_face", "multiple_faces", "looking_away", "camera_blocked")
METRICS = tuple(METRIC_TABLES)
"""The exam report's charts, each with its CSV."""


# Every session shares one thumbnail strip of an hour at 30 s per tile (what the pipeline makes for 3600 s).
SPRITE_KEY, SPRITE_TILES, SPRITE_COLUMNS = "bench/thumbnails.jpg", 120, 10
SPRITE_INDEX: dict[str, Any] = {
    "key": SPRITE_KEY, "every_s": 30.0, "count": SPRITE_TILES, "columns": SPRITE_COLUMNS, "tile_width": 160,
    "tile_height": 120,
}  # fmt: skip


def sprite_jpeg(rng: random.Random) -> bytes:
    """A sprite the size of an hour's strip, of smooth random tiles (JPEG sizes like camera frames')."""
    rows = SPRITE_TILES // SPRITE_COLUMNS
    noise = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (rows * 12, SPRITE_COLUMNS * 16, 3))
    image = cv2.resize(noise.astype(np.uint8), (SPRITE_COLUMNS * 160, rows * 120), interpolation=cv2.INTER_LINEAR)
    return bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1])


def populate(db_factory: object, rng: random.Random) -> list[str]:
    """Bulk-insert tenants, exams, processed sessions with webcam media, and flags; returns session ids."""
    now = datetime.now(UTC)
    tenants = [
        {"id": uuid.uuid4().hex, "slug": f"bench-{i}", "name": f"platform {i}", "created_at": now}
        for i in range(TENANTS)
    ]
    exams = [
        {
            "id": uuid.uuid4().hex,
            "tenant_id": t["id"],
            "external_id": f"exam-{j}",
            "title": "",
            "policy": {},
            "created_at": now,
        }
        for t in tenants
        for j in range(10)
    ]
    sessions, media = [], []
    for i in range(SESSIONS):
        exam = exams[i % len(exams)]
        processed = now - timedelta(minutes=rng.randrange(60 * 24 * 30))
        risk = rng.random()
        session_id = uuid.uuid4().hex
        sessions.append(
            {
                "id": session_id, "tenant_id": exam["tenant_id"], "exam_id": exam["id"], "candidate_id": f"c{i}",
                "attempt_id": f"a{i}", "started_at": processed - timedelta(hours=2),
                "state": rng.choice(("processed", "processed", "processed", "reviewed")), "duration_s": 3600.0,
                "created_at": processed, "updated_at": processed, "chunks_done": 120, "chunks_total": 120,
                "risk_score": risk, "review_priority": "high" if risk > 0.6 else "medium" if risk > 0.3 else "low",
                "pipeline_version": "1", "processed_at": processed, "results_prefix": f"bench/{session_id}/",
                "thumbnails": SPRITE_INDEX,
            }
        )  # fmt: skip
        media.append(
            {
                "id": uuid.uuid4().hex, "session_id": session_id, "kind": "webcam", "object_key": f"b/{session_id}",
                "content_type": "video/webm", "declared_size": 10**8, "declared_sha256": "0" * 64, "part_size": 8 << 20,
                "state": "complete",
            }
        )  # fmt: skip
    flags = []
    for _ in range(FLAGS):
        session = sessions[rng.randrange(SESSIONS)]
        start = rng.randrange(3_500_000)
        flags.append(
            {
                "id": uuid.uuid4().hex, "session_id": session["id"], "kind": rng.choice(KINDS), "start_ms": start,
                "end_ms": start + rng.randrange(3_000, 60_000), "score": rng.random(), "peak_ms": start + 1000,
                "evidence_keys": [], "detector_versions": {"face_presence": "bench"}, "pipeline_version": "1",
                "created_at": now, "source": "detector",
            }
        )  # fmt: skip
    with db_factory() as db:  # type: ignore[operator]
        for table, rows in (
            (Tenant, tenants),
            (Exam, exams),
            (ExamSession, sessions),
            (Media, media),
            (FlagSegment, flags),
        ):
            for start in range(0, len(rows), 5000):
                db.execute(insert(table), rows[start : start + 5000])
        db.commit()
        # its own random stream, so the pages timed below are the ones earlier runs timed
        add_review_history(db, random.Random(11), [s for s in sessions if s["state"] == "reviewed"], flags)
    return [str(s["id"]) for s in sessions]


def add_review_history(
    db: Any, rng: random.Random, reviewed: list[dict[str, Any]], flags: list[dict[str, Any]]
) -> None:
    """What reviewing left behind for the reviewed sessions: when the upload ended, a decision on each flag, the
    final outcome (a Rules Violation for one in six, with its second review in the audit trail) by one of two
    reviewers, ten minutes to four days after the upload."""
    first, second = (add_user(db, f"bench-{name}", PASSWORD, Role.REVIEWER).id for name in ("first", "second"))
    changes, reviews, outcomes, confirmed_violations = [], [], [], []
    for s in reviewed:
        uploaded = s["processed_at"] - timedelta(minutes=30)
        final = uploaded + timedelta(minutes=rng.randrange(10, 60 * 24 * 4))
        outcome = rng.choice(("Clean", "Clean", "Clean", "Suspicious", "Not Reviewed", "Rules Violation"))
        second_by = second if outcome == "Rules Violation" else None
        changes.append({"session_id": s["id"], "from_state": "uploading", "to_state": "uploaded", "at": uploaded})
        reviews.append(
            {
                "session_id": s["id"], "outcome": outcome, "note": "", "status": "final", "reviewer_id": first,
                "decided_at": final, "second_reviewer_id": second_by, "finalised_at": final,
            }
        )  # fmt: skip
        outcomes.append(
            {"session_id": s["id"], "version": 1, "outcome": outcome, "decided_by": first, "second_by": second_by,
             "decided_at": final}
        )  # fmt: skip
        if second_by:
            confirmed_violations.append((s, final))
    ids = {str(s["id"]) for s in reviewed}
    decisions = [
        {"segment_id": f["id"], "session_id": f["session_id"], "decision": rng.choice(("confirmed", "dismissed")),
         "note": "", "reviewer_id": first, "decided_at": f["created_at"]}
        for f in flags
        if f["session_id"] in ids
    ]  # fmt: skip
    for table, rows in ((StateChange, changes), (SessionReview, reviews), (ReviewOutcome, outcomes),
                        (FlagDecision, decisions)):  # fmt: skip
        for start in range(0, len(rows), 5000):
            db.execute(insert(table), rows[start : start + 5000])
    for s, final in confirmed_violations:
        audit.record(
            db, "user:bench-second", "second_review", at=final, tenant_id=s["tenant_id"], session_id=s["id"],
            confirmed=True, note="", note_shared=False, first_reviewer=first,
        )  # fmt: skip
    db.commit()


def sign_in(url: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/review/login").text)
    assert token is not None
    response = client.post("/review/login", data={"username": username, "password": PASSWORD, "csrf_token": token[1]})
    assert response.status_code == 303, response.text
    return client


def timed(client: httpx.Client, paths: list[str]) -> list[float]:
    samples = []
    for path in paths:
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main() -> None:
    print(machine())
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as work, EmbeddedS3(Path(work) / "s3", bucket="bench") as location:
        settings = Settings(
            data_dir=Path(work),
            database_url=os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{Path(work) / 'bench.db'}",
            _env_file=None,
        )  # type: ignore[call-arg]
        context = build_context(settings, location)
        context.store.put_bytes(SPRITE_KEY, sprite_jpeg(rng), content_type="image/jpeg")
        started = time.perf_counter()
        session_ids = populate(context.db, rng)
        with context.db() as db:
            reviewer = add_user(db, "bench-reviewer", PASSWORD, Role.REVIEWER)
            for i in range(TENANTS // 2):
                assign(db, reviewer, f"bench-{i}")
            add_user(db, "bench-admin", PASSWORD, Role.ADMIN)
            db.commit()
        dialect = settings.resolved_database_url.split(":")[0]
        print(f"database: {SESSIONS} sessions, {FLAGS} flags in {time.perf_counter() - started:.1f} s ({dialect})")
        app = server_app(context)
        rows = []
        with BackgroundServer(app) as url:
            reviewer_client, admin_client = sign_in(url, "bench-reviewer"), sign_in(url, "bench-admin")
            for client in (reviewer_client, admin_client):  # warm up
                timed(client, ["/review/queue"] * 5)
            queue_paths = {
                "queue (reviewer, 5 tenants)": (reviewer_client, ["/review/queue"] * REQUESTS),
                "queue (admin, all)": (admin_client, ["/review/queue"] * REQUESTS),
                "queue filtered by kind": (admin_client, [f"/review/queue?kind={rng.choice(KINDS)}" for _ in range(REQUESTS)]),  # noqa: E501
                "queue page 40": (admin_client, ["/review/queue?page=40"] * REQUESTS),
            }  # fmt: skip
            session_paths = {
                "session page": (
                    admin_client,
                    [f"/review/sessions/{rng.choice(session_ids)}" for _ in range(REQUESTS)],
                ),
                "thumbnail strip (120 tiles)": (
                    admin_client,
                    [f"/review/sessions/{rng.choice(session_ids)}/thumbnails" for _ in range(REQUESTS)],
                ),
            }
            with context.db() as db:
                exam_ids = list(db.scalars(select(Exam.id)))
            week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
            report_paths = {
                "reports index (admin)": (admin_client, ["/review/reports"] * REQUESTS),
                "exam report (100 sessions)": (
                    admin_client,
                    [f"/review/reports/{rng.choice(exam_ids)}" for _ in range(REQUESTS)],
                ),
                "exam report CSV": (
                    admin_client,
                    [f"/review/reports/{rng.choice(exam_ids)}?format=csv" for _ in range(REQUESTS)],
                ),
                "exam report in a date range": (
                    admin_client,
                    [f"/review/reports/{rng.choice(exam_ids)}?from={week_ago}" for _ in range(REQUESTS)],
                ),
                "exam report metric CSVs": (
                    admin_client,
                    [
                        f"/review/reports/{rng.choice(exam_ids)}/metrics/{METRICS[i % len(METRICS)]}.csv"
                        for i in range(REQUESTS)
                    ],
                ),
            }
            queue_samples: list[float] = []
            session_samples: list[float] = []
            report_samples: list[float] = []
            for group, target in (
                (queue_paths, queue_samples),
                (session_paths, session_samples),
                (report_paths, report_samples),
            ):
                for name, (client, paths) in group.items():
                    samples = timed(client, paths)
                    target.extend(samples)
                    rows.append((name, len(samples), statistics.median(samples), p95(samples), max(samples)))
            started = time.perf_counter()
            rescore_exam_id = build_exam(context, "bench-0")
            print(f"re-score exam: 100 sessions with stored signals in {time.perf_counter() - started:.1f} s")
            rescore = rescore_exam(context, admin_client, rescore_exam_id)
        context.close()
    print(f"\n{'page':<30} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for name, n, median, q95, worst in rows:
        print(f"{name:<30} {n:>5} {median:>10.1f} {q95:>8.1f} {worst:>8.1f}")
    queue_p95, session_p95, report_p95 = p95(queue_samples), p95(session_samples), p95(report_samples)
    verdict = "met" if max(queue_p95, session_p95, report_p95) < 300 else "missed"
    print(f"\ntarget p95 < 300 ms: {verdict}")
    print(
        f"policy preview: {rescore.preview_s:.1f} s for the {rescore.previewed} most recent sessions; re-score with "
        f"one worker: {rescore.rescore_s:.1f} s for {rescore.sessions} sessions ({rescore.changed} changed)"
    )
    print(
        f"RESULT review_ui queue_p95_ms={queue_p95:.1f} session_p95_ms={session_p95:.1f} "
        f"report_p95_ms={report_p95:.1f} rescore_100_s={rescore.rescore_s:.1f}"
    )


if __name__ == "__main__":
    main()
