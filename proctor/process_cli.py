"""Commands that analyse recordings: `proctor worker`, `proctor process` and `proctor analyze`.

The analysis stack (ONNX Runtime, OpenCV, Ray, the models) is imported inside these commands, so
`proctor serve` and the upload commands stay small (the API's memory is measured per process).
"""

from __future__ import annotations

import json
import signal
import threading
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import select

from core.context import AppContext, build_context
from core.db import ping_database
from core.health import Dependency, DependencyChecks
from core.settings import Settings
from core.states import SessionState
from core.tables import ExamSession, FlagSegment
from ingest.event_log import parse_event_log
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from proctor import wiring
from proctor.logs import LogLevel, configure_logging
from proctor.wiring import job_queue

console = Console()


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


def worker(log_level: LogLevel = "info") -> None:
    """Claim queued sessions and process them on Ray until stopped (Ctrl-C / SIGTERM). On a stop, the job in
    hand is finished if it should end within PROCTOR_WORKER_STOP_GRACE_S, else handed back to the queue.

    With PROCTOR_WORKER_METRICS_PORT set, /healthz (the loop goes round), /readyz (the fan-out is up and the
    database answers) and /metrics are served on that port from the start, Ray's connection included."""
    from pipelines.metrics import WorkerMonitor
    from pipelines.ops_server import OpsServer
    from proctor import processing  # the analysis stack, only in the commands that process

    configure_logging(log_level)
    settings = Settings()
    with wiring.worker_s3(settings) as location, ExitStack() as resources:
        context = build_context(settings, location)
        resources.callback(context.close)
        database = Dependency("database", partial(ping_database, context.db))
        monitor = WorkerMonitor(
            context.db, DependencyChecks([database], settings.ready_check_timeout_s), settings.worker_poll_s
        )
        if settings.worker_metrics_port is not None:
            resources.enter_context(OpsServer(settings.worker_metrics_host, settings.worker_metrics_port, monitor))
        fanout = processing.ray_fanout(context)
        resources.callback(fanout.close)
        # After Ray's start: a local Ray installs its own SIGTERM handler, which aborts the process (no hand-back).
        stop = stop_on_signals()
        monitor.fanout_up()
        replace(processing.worker(context, fanout, job_queue(context)), hooks=monitor).run_forever(stop)


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM (systemd, `docker stop`, Kubernetes) and SIGINT (Ctrl-C) set (call on the main thread)."""
    stop = threading.Event()
    for stopping in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stopping, lambda *_: stop.set())
    return stop


def process(
    session_id: str,
    log_level: LogLevel = "warning",
) -> None:
    """Process one session now, with a progress bar (re-processes a processed or failed session)."""
    configure_logging(log_level)
    settings = Settings()
    with wiring.worker_s3(settings) as location:
        context = build_context(settings, location)
        process_with_progress(context, session_id)
        context.close()


def process_with_progress(context: AppContext, session_id: str) -> None:
    """Process one session now on a local or configured Ray, with a progress bar, and print its flags."""
    from proctor import processing  # the analysis stack, only in the commands that process

    queue = job_queue(context)
    with context.db() as db:
        session = db.get(ExamSession, session_id)
        if session is None:
            raise typer.BadParameter(f"no session {session_id!r}")
        state = session.state
    if state in (SessionState.PROCESSED, SessionState.FAILED):
        queue.enqueue(session_id)
    fanout = processing.ray_fanout(context)
    try:
        with Progress(*Progress.get_default_columns(), console=console) as bar:
            task = bar.add_task("analysing chunks", total=None)
            ran = processing.worker(context, fanout, queue).run_one(
                session_id, on_progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    finally:
        fanout.close()
    if not ran:
        console.print(f"[red]session {session_id} has no runnable job[/] (state {state})")
        raise typer.Exit(2)
    _print_results(context, session_id)


def _print_results(context: AppContext, session_id: str) -> None:
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
