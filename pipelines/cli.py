"""`proctor`: the one command-line entry point. Each stage contributes its own commands."""

from __future__ import annotations

import json
import logging
import secrets
import signal
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from ingest import cli as ingest_cli
from ingest.api import create_app
from ingest.client import IngestClient, upload_session
from ingest.context import IngestContext, build_context
from ingest.db import ExamSession, FlagSegment, Tenant, User
from ingest.embedded_s3 import s3_location
from ingest.event_log import parse_event_log
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from ingest.settings import Settings
from ingest.tenants import add_tenant, issue_api_key
from pipelines.local_server import BackgroundServer
from pipelines.logs import configure_logging
from review_ui import cli as review_cli
from review_ui.accounts import Role, add_user, assign, set_password
from review_ui.web import mount_review
from review_ui.webhooks import DeliveryPolicy, WebhookSender

if TYPE_CHECKING:
    from pipelines.fanout import RayFanout

# The analysis stack (ONNX Runtime, OpenCV, Ray, the models) is imported inside the commands that use it,
# so `proctor serve` and the upload commands stay small (the API's memory is measured per process).

console = Console()
app = typer.Typer(
    help="proctor-pipeline: record-and-review exam proctoring.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(ingest_cli.tenants_app, name="tenants")
ingest_cli.tenants_app.command("webhook")(review_cli.tenants_webhook)
app.add_typer(review_cli.users_app, name="users")
app.command("ingest")(ingest_cli.ingest)
app.command("status")(ingest_cli.status)
app.command("retention")(ingest_cli.retention)

LogLevel = Annotated[str, typer.Option(envvar="PROCTOR_LOG_LEVEL", help="debug, info, warning, error")]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: PROCTOR_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: PROCTOR_API_PORT")] = None,
    log_level: LogLevel = "info",
) -> None:
    """Run the HTTP API and the review UI (and the embedded S3 server when no PROCTOR_S3_ENDPOINT is set)."""
    configure_logging(log_level)
    settings = Settings()
    with s3_location(settings) as location:
        context = build_context(settings, location)
        api = create_app(context)
        mount_review(api)
        sender = WebhookSender(
            context.db,
            DeliveryPolicy(settings.webhook_max_attempts, settings.webhook_backoff_s, settings.webhook_timeout_s),
        )
        webhooks = threading.Thread(target=sender.run, name="webhooks", daemon=True)
        webhooks.start()
        try:
            uvicorn.run(
                api,
                host=host or settings.api_host,
                port=port or settings.api_port,
                log_config=None,
                proxy_headers=True,
            )
        finally:
            sender.stop.set()
            webhooks.join(timeout=5)
            context.close()


@app.command()
def analyze(
    video: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a local recording")],
    events: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="exam event log, JSON lines")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the result as JSON here")] = None,
    log_level: LogLevel = "warning",
) -> None:
    """Run the whole pipeline on a local file: no storage, no database. For a quick look or evaluation.

    The JSON is {"video", "duration_s", "segments": [{"kind", "start_s", "end_s", "score"}], ...}; the
    keys named here are stable.
    """
    from pipelines.analysis import PIPELINE_VERSION, analyze_file

    configure_logging(log_level)
    try:
        probe = probe_video(video, ProbeLimits())
        exam_events = parse_event_log(events.open("rb")) if events else []
    except MediaRejected as rejected:
        console.print(f"[red]{rejected.code}[/]: {rejected.message}")
        raise typer.Exit(2) from None
    keyframes_ms = round(probe.keyframe_interval_s * 1000) if probe.keyframe_interval_s else None
    result = analyze_file(video, round(probe.duration_s * 1000), keyframes_ms)
    segments = [
        {"kind": s.kind.value, "start_s": s.start_ms / 1000, "end_s": s.end_ms / 1000, "score": s.score}
        for s in result.segments
    ]
    report = {
        "video": video.name,
        "duration_s": probe.duration_s,
        "segments": segments,
        "risk": result.risk,
        "events": [{"type": e.type.value, "t_s": e.t_ms / 1000} for e in exam_events],
        "pipeline_version": PIPELINE_VERSION,
        "detectors": dict(result.detector_versions),
    }
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2))
    table = Table(
        "kind", "start s", "end s", "score", title=f"{video.name}: {probe.duration_s:.1f} s, risk {result.risk}"
    )
    for flagged in result.segments:
        table.add_row(
            flagged.kind.value, f"{flagged.start_ms / 1000:.1f}", f"{flagged.end_ms / 1000:.1f}", f"{flagged.score:.2f}"
        )
    console.print(table)


def _ray_fanout(context: IngestContext, workers: int | None = None) -> RayFanout:
    from pipelines.fanout import RayFanout, RayOptions
    from pipelines.worker import analysis_config

    settings = context.settings
    return RayFanout(
        analysis_config(settings),
        context.location,
        RayOptions(
            address=settings.ray_address,
            workers=workers or settings.workers,
            device="cuda" if settings.device == "cuda" else "cpu",
        ),
    )


@app.command()
def worker(log_level: LogLevel = "info") -> None:
    """Claim queued sessions and process them on Ray until stopped (Ctrl-C / SIGTERM)."""
    from pipelines.worker import Worker, job_queue

    configure_logging(log_level)
    settings = Settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with s3_location(settings) as location:
        context = build_context(settings, location)
        fanout = _ray_fanout(context)
        try:
            Worker(context, fanout, job_queue(context)).run_forever(stop)
        except KeyboardInterrupt:
            pass
        finally:
            fanout.close()
            context.close()


@app.command()
def process(
    session_id: str,
    log_level: LogLevel = "warning",
) -> None:
    """Process one session now, with a progress bar (re-processes a processed or failed session)."""
    configure_logging(log_level)
    settings = Settings()
    with s3_location(settings) as location:
        context = build_context(settings, location)
        _process_with_progress(context, session_id)
        context.close()


def _process_with_progress(context: IngestContext, session_id: str) -> None:
    from pipelines.worker import Worker, job_queue

    queue = job_queue(context)
    with context.db() as db:
        session = db.get(ExamSession, session_id)
        if session is None:
            raise typer.BadParameter(f"no session {session_id!r}")
        state = session.state
    if state in ("processed", "failed"):
        queue.enqueue(session_id)
    fanout = _ray_fanout(context)
    try:
        with Progress(*Progress.get_default_columns(), console=console) as bar:
            task = bar.add_task("analysing chunks", total=None)
            ran = Worker(context, fanout, queue).run_one(
                session_id, on_progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    finally:
        fanout.close()
    if not ran:
        console.print(f"[red]session {session_id} has no runnable job[/] (state {state})")
        raise typer.Exit(2)
    _print_results(context, session_id)


def _print_results(context: IngestContext, session_id: str) -> None:
    with context.db() as db:
        session = db.get(ExamSession, session_id)
        assert session is not None
        segments = db.scalars(
            select(FlagSegment).where(FlagSegment.session_id == session_id).order_by(FlagSegment.start_ms)
        ).all()
        title = f"session {session_id}: {session.state}, risk {session.risk_score}, priority {session.review_priority}"
        if session.reason:
            title += f" ({session.reason})"
        table = Table("kind", "start s", "end s", "score", "evidence", title=title)
        for seg in segments:
            table.add_row(
                seg.kind,
                f"{seg.start_ms / 1000:.1f}",
                f"{seg.end_ms / 1000:.1f}",
                f"{seg.score:.2f}",
                ", ".join(k.rsplit("/", 1)[-1] for k in seg.evidence_keys),
            )
    console.print(table)


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


@app.command()
def demo(log_level: LogLevel = "warning") -> None:
    """Start the embedded services, ingest a sample session built from real face photos, show its status."""
    from ingest.samples import build_sample_session  # needs the demo extra (scikit-image, matplotlib)

    configure_logging(log_level)
    settings = Settings()
    console.rule("proctor-pipeline demo")
    console.print(f"data directory: {settings.data_dir.resolve()}")
    with s3_location(settings) as location:
        console.print(
            f"object storage: {'embedded SeaweedFS at ' if settings.s3_endpoint is None else ''}{location.endpoint}, "
            f"bucket {location.bucket}"
        )
        context = build_context(settings, location)
        console.print(f"database: {settings.resolved_database_url}")
        with context.db() as db:
            tenant = db.scalar(select(Tenant).where(Tenant.slug == DEMO_TENANT)) or add_tenant(
                db, DEMO_TENANT, "Demo exam platform"
            )
            api_key = issue_api_key(db, tenant, label="proctor demo")
            reviewer_password = _demo_reviewer(db)
            db.commit()
        with BackgroundServer(create_app(context)) as api_url, tempfile.TemporaryDirectory() as work:
            console.print(f"API: {api_url}  (OpenAPI at {api_url}/docs)")
            sample = build_sample_session(Path(work))
            console.print(
                f"sample session: {sample.duration_s:.0f} s, {sample.width}x{sample.height} @ {sample.fps} fps, "
                f"{len(sample.intervals)} scripted intervals (real faces from scikit-image and matplotlib)"
            )
            with IngestClient(api_url, api_key) as client, ingest_cli.upload_progress() as progress:
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
            ingest_cli.print_session(session)
        console.print("processing on a local Ray cluster: chunks fan out to workers that run the detectors")
        _process_with_progress(context, session["id"])
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


if __name__ == "__main__":
    app()
