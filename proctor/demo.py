"""`proctor demo`: the whole chain on embedded defaults, from a sample upload to a reviewer who can sign in."""

from __future__ import annotations

import logging
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.context import build_context
from core.settings import Settings
from core.tables import Tenant, User
from core.tenants import add_tenant, issue_api_key
from core.vocabulary import Role
from ingest.client import IngestClient, upload_session
from proctor import wiring
from proctor.local_server import BackgroundServer
from proctor.logs import LogLevel, configure_logging
from proctor.process_cli import process_with_progress
from proctor.upload_cli import print_session, upload_progress
from proctor.wiring import platform_app
from review_ui.accounts import add_user, assign, set_password

console = Console()

DEMO_TENANT = "demo-platform"
DEMO_REVIEWER = "demo-reviewer"


def _demo_reviewer(db: Session) -> str:
    """A reviewer of the demo tenant with a fresh random password (printed once by the demo)."""
    password = secrets.token_urlsafe(12)
    user = db.scalar(select(User).where(User.username == DEMO_REVIEWER))
    if user is None:
        user = add_user(db, DEMO_REVIEWER, password, Role.REVIEWER)
        assign(db, user, DEMO_TENANT)
    else:
        set_password(db, user, password)
    return password


def demo(log_level: LogLevel = "warning") -> None:
    """Start the embedded services, ingest a sample session built from real face photos, show its status."""
    from proctor.samples import build_sample_session  # needs the demo extra (scikit-image, matplotlib)

    configure_logging(log_level)
    settings = Settings()
    console.rule("proctor-pipeline demo")
    console.print(f"data directory: {settings.data_dir.resolve()}")
    with wiring.s3(settings) as location:
        console.print(
            f"object storage: {'embedded SeaweedFS at ' if settings.s3_endpoint is None else ''}{location.endpoint}, "
            f"bucket {location.bucket}"
        )
        context = build_context(settings, location)
        console.print(f"database: {settings.redacted_database_url}")
        with context.db() as db:
            tenant = db.scalar(select(Tenant).where(Tenant.slug == DEMO_TENANT)) or add_tenant(
                db, DEMO_TENANT, "Demo exam platform"
            )
            api_key = issue_api_key(db, tenant, label="proctor demo")
            reviewer_password = _demo_reviewer(db)
            db.commit()
        with BackgroundServer(platform_app(context)) as api_url, tempfile.TemporaryDirectory() as work:
            console.print(f"API: {api_url}  (OpenAPI at {api_url}/docs)")
            sample = build_sample_session(Path(work))
            console.print(
                f"sample session: {sample.duration_s:.0f} s, {sample.width}x{sample.height} @ {sample.fps} fps, "
                f"{len(sample.intervals)} scripted intervals (real faces from scikit-image and matplotlib)"
            )
            with IngestClient(api_url, api_key) as client, upload_progress() as progress:
                files = [sample.video_path, *([sample.events_path] if sample.events_path else [])]
                task = progress.add_task("upload", total=sum(p.stat().st_size for p in files))
                session = upload_session(
                    client,
                    webcam=sample.video_path,
                    events=sample.events_path,
                    exam_id="demo-exam-101",
                    candidate_id="cand-0001",
                    attempt_id=datetime.now(UTC).strftime("demo-%Y%m%dT%H%M%S"),
                    on_bytes=lambda n: progress.advance(task, n),
                )
            print_session(session)
        console.print("processing on a local Ray cluster: chunks fan out to workers that run the detectors")
        process_with_progress(context, session["id"])
        context.close()
    logging.getLogger(__name__).info("demo finished", extra={"session_id": session["id"]})
    expected = "; ".join(
        f"{i.start_s:.0f}-{i.end_s:.0f} s {i.what.split(':')[0]}"
        for i in sample.intervals
        if i.faces != 1 or i.looking_away
    )
    console.print(f"the sample's script, for comparison: {expected}")
    console.print(
        f"review it: run `.venv/bin/proctor serve`, open {settings.resolved_public_api_url}/review "
        f"and sign in as [bold]{DEMO_REVIEWER}[/] with password [bold]{reviewer_password}[/]"
    )
