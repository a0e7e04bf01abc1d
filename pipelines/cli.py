"""`proctor`: the one command-line entry point. Each stage contributes its own commands."""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from ingest import cli as ingest_cli
from ingest.api import create_app
from ingest.client import IngestClient, upload_session
from ingest.context import build_context
from ingest.db import Tenant
from ingest.embedded_s3 import s3_location
from ingest.event_log import parse_event_log
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from ingest.settings import Settings
from ingest.tenants import add_tenant, issue_api_key
from pipelines.analysis import PIPELINE_VERSION, analyze_file
from pipelines.local_server import BackgroundServer
from pipelines.logs import configure_logging

console = Console()
app = typer.Typer(
    help="proctor-pipeline: record-and-review exam proctoring.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(ingest_cli.tenants_app, name="tenants")
app.command("ingest")(ingest_cli.ingest)
app.command("status")(ingest_cli.status)

LogLevel = Annotated[str, typer.Option(envvar="PROCTOR_LOG_LEVEL", help="debug, info, warning, error")]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: PROCTOR_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: PROCTOR_API_PORT")] = None,
    log_level: LogLevel = "info",
) -> None:
    """Run the HTTP API (and the embedded S3 server when no PROCTOR_S3_ENDPOINT is set)."""
    configure_logging(log_level)
    settings = Settings()
    with s3_location(settings) as location:
        context = build_context(settings, location)
        try:
            uvicorn.run(
                create_app(context),
                host=host or settings.api_host,
                port=port or settings.api_port,
                log_config=None,
                proxy_headers=True,
            )
        finally:
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


DEMO_TENANT = "demo-platform"


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
        context.close()
    logging.getLogger(__name__).info("demo finished", extra={"session_id": session["id"]})
    console.print(
        f"session {session['id']} is [bold]{session['state']}[/]: uploaded, checksummed and probed; "
        "it waits for `proctor worker` to process it."
    )


if __name__ == "__main__":
    app()
