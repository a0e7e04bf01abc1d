"""The platform side of the upload protocol on the command line: `proctor ingest` and `proctor status`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from core.settings import Settings
from ingest.client import IngestClient, IngestRequestError, upload_session

console = Console()

ApiUrl = Annotated[str | None, typer.Option(envvar="PROCTOR_API_URL", help="default: this machine's API")]
ApiKey = Annotated[str, typer.Option(envvar="PROCTOR_API_KEY", help="the tenant's key (pp_...)")]


def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the webcam recording")],
    exam: Annotated[str, typer.Option(help="the platform's exam id")],
    candidate: Annotated[str, typer.Option(help="pseudonymous candidate id")],
    api_key: ApiKey,
    attempt: Annotated[str | None, typer.Option(help="attempt id (default: derived from the file)")] = None,
    screen: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    events: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="exam event log, JSON lines")] = None,
    enrolment_photo: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="the candidate's reference photo (JPEG or PNG)")
    ] = None,
    enrolment_clip: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="a short clip of the candidate's face")
    ] = None,
    api_url: ApiUrl = None,
    parallel: Annotated[int, typer.Option(min=1, max=16, help="parts in flight")] = 4,
) -> None:
    """Upload a recorded session through the HTTP API. Re-run the same command to resume after a failure."""
    url = api_url or Settings().resolved_public_api_url
    files = (file, screen, events, enrolment_photo, enrolment_clip)
    total = sum(p.stat().st_size for p in files if p is not None)
    with IngestClient(url, api_key) as client, upload_progress() as progress:
        task = progress.add_task("upload", total=total)
        try:
            session = upload_session(
                client,
                webcam=file,
                exam_id=exam,
                candidate_id=candidate,
                attempt_id=attempt,
                screen=screen,
                events=events,
                enrolment_photo=enrolment_photo,
                enrolment_clip=enrolment_clip,
                on_bytes=lambda n: progress.advance(task, n),
                parallel=parallel,
            )
        except IngestRequestError as exc:
            progress.stop()
            console.print(f"[red]refused[/] ({exc.status} {exc.code}): {exc.message}")
            raise typer.Exit(2) from None
    print_session(session)


def status(
    session_id: str,
    api_key: ApiKey,
    api_url: ApiUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
) -> None:
    """Show a session's state, media and probe results."""
    url = api_url or Settings().resolved_public_api_url
    with IngestClient(url, api_key) as client:
        try:
            session = client.session(session_id)
        except IngestRequestError as exc:
            console.print(f"[red]{exc.status} {exc.code}[/]: {exc.message}")
            raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(session, indent=2))
    else:
        print_session(session)


def upload_progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def print_session(session: dict[str, Any]) -> None:
    console.print(
        f"session [bold]{session['id']}[/]  exam {session['exam_id']}  candidate {session['candidate_id']}  "
        f"state [bold]{session['state']}[/]"
    )
    if session.get("reason"):
        console.print(f"  reason: {session['reason']['code']}: {session['reason']['message']}")
    table = Table("media", "state", "MB", "what arrived")
    for m in session["media"]:
        probe = m.get("probe")
        if probe:
            what = (
                f"{probe['container']} {probe['codec']} {probe['width']}x{probe['height']} "
                f"{probe['frame_rate']:.1f} fps {probe['duration_s']:.1f} s rot {probe['rotation_deg']}"
            )
        elif m.get("events_count") is not None:
            what = f"{m['events_count']} exam events"
        elif m.get("reason"):  # a refused enrolment: the exam goes on without it
            what = f"{m['reason']['code']}: {m['reason']['message']}"
        else:
            what = ""
        table.add_row(m["kind"], m["state"], f"{m['size_bytes'] / 1e6:.1f}", what)
    console.print(table)
