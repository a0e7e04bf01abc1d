"""`proctor tenants ...`, `proctor ingest`, `proctor status` and `proctor retention`: the ingest stage's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from sqlalchemy import select

from ingest.client import IngestClient, IngestRequestError, upload_session
from ingest.context import build_context
from ingest.db import Tenant, make_engine, make_sessionmaker, migrate, utcnow
from ingest.embedded_s3 import s3_location
from ingest.retention import erase_expired
from ingest.settings import Settings
from ingest.tenants import TenantExists, add_tenant, issue_api_key

console = Console()
tenants_app = typer.Typer(help="Exam platforms (tenants) and their API keys.", no_args_is_help=True)

ApiUrl = Annotated[str | None, typer.Option(envvar="PROCTOR_API_URL", help="default: this machine's API")]
ApiKey = Annotated[str, typer.Option(envvar="PROCTOR_API_KEY", help="the tenant's key (pp_...)")]


def _db(settings: Settings) -> Any:
    url = settings.resolved_database_url
    migrate(url)
    return make_sessionmaker(make_engine(url))


@tenants_app.command("add")
def tenants_add(slug: str, name: str = typer.Option("", help="display name")) -> None:
    """Register an exam platform and print its first API key (shown once)."""
    settings = Settings()
    with _db(settings)() as db:
        try:
            tenant = add_tenant(db, slug, name)
        except (TenantExists, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from None
        key = issue_api_key(db, tenant, label="created with the tenant")
        db.commit()
    console.print(f"tenant [bold]{slug}[/] created; API key (store it now, it is not shown again):")
    typer.echo(key)


@tenants_app.command("key")
def tenants_key(slug: str, label: str = typer.Option("", help="what the key is for")) -> None:
    """Issue another API key for a tenant (for rotation)."""
    settings = Settings()
    with _db(settings)() as db:
        tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            raise typer.BadParameter(f"no tenant {slug!r}; create it with `proctor tenants add {slug}`")
        key = issue_api_key(db, tenant, label=label)
        db.commit()
    typer.echo(key)


@tenants_app.command("list")
def tenants_list() -> None:
    settings = Settings()
    table = Table("slug", "name", "created")
    with _db(settings)() as db:
        for tenant in db.scalars(select(Tenant).order_by(Tenant.slug)):
            table.add_row(tenant.slug, tenant.name, tenant.created_at.isoformat(timespec="seconds"))
    console.print(table)


def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the webcam recording")],
    exam: Annotated[str, typer.Option(help="the platform's exam id")],
    candidate: Annotated[str, typer.Option(help="pseudonymous candidate id")],
    api_key: ApiKey,
    attempt: Annotated[str | None, typer.Option(help="attempt id (default: derived from the file)")] = None,
    screen: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    events: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="exam event log, JSON lines")] = None,
    api_url: ApiUrl = None,
    parallel: Annotated[int, typer.Option(min=1, max=16, help="parts in flight")] = 4,
) -> None:
    """Upload a recorded session through the HTTP API. Re-run the same command to resume after a failure."""
    url = api_url or Settings().resolved_public_api_url
    total = sum(p.stat().st_size for p in (file, screen, events) if p is not None)
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


def retention(
    days: Annotated[
        int | None, typer.Option(min=1, help="retention period in days; default: PROCTOR_RETENTION_DAYS")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the sessions it would erase; erase nothing")] = False,
) -> None:
    """Erase the recordings and results of sessions past the retention period. Run it daily (cron, a CronJob)."""
    settings = Settings()
    period = days if days is not None else settings.retention_days
    if period is None:
        raise typer.BadParameter("no retention period: set PROCTOR_RETENTION_DAYS or pass --days")
    with s3_location(settings) as location:
        context = build_context(settings, location)
        try:
            expired = erase_expired(context.uploads, context.db, period, utcnow(), dry_run=dry_run)
        finally:
            context.close()
    verb = "would erase" if dry_run else "erased"
    for item in expired:  # one plain line each, for cron logs
        typer.echo(f"{verb} session {item.session_id} tenant {item.tenant_id} since {item.since.isoformat()}")
    typer.echo(f"{verb} {len(expired)} session(s) past the {period}-day retention period")


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
        else:
            what = ""
        table.add_row(m["kind"], m["state"], f"{m['size_bytes'] / 1e6:.1f}", what)
    console.print(table)
