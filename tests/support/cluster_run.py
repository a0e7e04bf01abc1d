"""What the cluster tests and the cluster benchmark share: the `proctor worker` command's environment for a Ray
cluster and a restartable S3 server, sessions queued through the platform API, and the count of sessions lost
or processed more than once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from core.tables import ExamSession, FlagSegment, Job
from ingest.client import upload_session
from storage.keys import SessionPrefix
from storage.object_store import S3Location
from tests.support.platform import Api

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Tally:
    """How sessions ended: `lost` not processed, `doubled` processed but not with exactly one set of results."""

    processed: int
    lost: int
    doubled: int


@dataclass(frozen=True)
class Progress:
    chunks_done: int
    chunks_total: int  # of the sessions whose chunks are planned
    part_way: bool  # a session's job is running with some of its chunks analysed and at least half still to go
    processed: int


def worker_env(
    api: Api, s3: S3Location, ray_address: str | None, ray_env: dict[str, str], **more: str
) -> dict[str, str]:
    """`proctor worker`'s environment: this checkout, the API's database, `s3`, and Ray at `ray_address` (None: a
    Ray of its own) with `ray_env` (the cluster's token); `more` adds or overrides PROCTOR_* settings by name."""
    settings = api.context.settings
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PROCTOR_", "RAY_"))}
    env = inherited | ray_env
    env |= {
        "PYTHONPATH": str(ROOT),
        "PROCTOR_DATABASE_URL": settings.resolved_database_url,
        "PROCTOR_DATA_DIR": str(settings.data_dir),
        "PROCTOR_S3_ENDPOINT": s3.endpoint,
        "PROCTOR_S3_ACCESS_KEY": s3.access_key,
        "PROCTOR_S3_SECRET_KEY": s3.secret_key,
        "PROCTOR_S3_BUCKET": s3.bucket,
        "PROCTOR_WORKER_POLL_S": "0.2",
    }
    if ray_address is not None:
        env["PROCTOR_RAY_ADDRESS"] = ray_address
    return env | {f"PROCTOR_{name.upper()}": value for name, value in more.items()}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`proctor worker` in a process of its own, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "proctor.cli", "worker"], env=env, cwd=log.parent, stdout=out, stderr=out
        )


def stop_worker(worker: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM (the worker hands back or finishes its job), then SIGKILL if it has not exited in time."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout_s)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def upload(api: Api, recordings: list[Path], exam: str) -> list[str]:
    """One session per recording, uploaded (and so queued) through the platform API as one new tenant."""
    _, key = api.tenant()
    with api.client(key) as client:
        return [
            upload_session(client, webcam=path, exam_id=exam, candidate_id=f"c{i}", attempt_id=uuid.uuid4().hex)["id"]
            for i, path in enumerate(recordings)
        ]


def progress(api: Api, sids: list[str]) -> Progress:
    done = total = processed = 0
    part_way = False
    with api.context.db() as db:
        jobs = {job.session_id: job.state for job in db.scalars(select(Job).where(Job.session_id.in_(sids)))}
        for session in db.scalars(select(ExamSession).where(ExamSession.id.in_(sids))):
            planned = session.chunks_total or 0
            done, total = done + session.chunks_done, total + planned
            processed += session.state == "processed"
            first_half = 1 <= session.chunks_done <= planned // 2
            part_way = part_way or (jobs.get(session.id) == "running" and first_half)
    return Progress(done, total, part_way, processed)


def tally(api: Api, sids: list[str]) -> Tally:
    """Each session: processed, with one run of flagged segments (the database's rows are its `segments.json`,
    at least one, none twice), and one results prefix in storage."""
    processed = lost = doubled = 0
    ctx = api.context
    for sid in sids:
        with ctx.db() as db:
            session = db.get(ExamSession, sid)
            assert session is not None, f"no session {sid}"
            if session.state != "processed" or session.results_prefix is None:
                lost += 1
                continue
            processed += 1
            results = session.results_prefix
            root = SessionPrefix(session.tenant.slug, session.exam.external_id, session.id).key("results") + "/"
            segments = db.scalars(select(FlagSegment).where(FlagSegment.session_id == sid)).all()
        stored = json.loads(b"".join(ctx.store.iter_chunks(results + "segments.json")))["segments"]
        keys = [info.key for info in ctx.store.list_objects(root)]
        unique = len({(s.kind, s.start_ms) for s in segments}) == len(segments)
        one_run = len(segments) == len(stored) >= 1 and unique
        if not (one_run and keys and all(k.startswith(results) for k in keys)):
            doubled += 1
    return Tally(processed, lost, doubled)
