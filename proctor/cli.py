"""`proctor`: the one command-line entry point of the product, and its composition root.

Each command builds what it needs from the settings through `proctor.wiring`; no stage imports another
stage's commands. `proctor serve` runs the platform API and the review UI in one process, with the
webhook sender and the exams' auto-clear sweep beside them.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import Annotated

import typer
import uvicorn
from sqlalchemy.exc import OperationalError

from core.context import build_context
from core.db import migrate as migrate_database
from core.db import utcnow
from core.settings import Settings
from proctor import admin_cli, demo, openedx_cli, process_cli, upload_cli, wiring
from proctor.local_server import proxy_options
from proctor.logs import LogLevel, configure_logging
from proctor.wiring import delivery_channels, delivery_policy, server_app
from review_ui.auto_clear import AutoClearer, auto_clear_sweep, qc_draw_key
from review_ui.lifespan import close_on_shutdown
from review_ui.webhooks import WebhookSender

app = typer.Typer(
    help="proctor-pipeline: record-and-review exam proctoring.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(admin_cli.tenants_app, name="tenants")
app.add_typer(admin_cli.users_app, name="users")
app.add_typer(admin_cli.audit_app, name="audit")
app.add_typer(openedx_cli.openedx_app, name="openedx")
app.command("ingest")(upload_cli.ingest)
app.command("status")(upload_cli.status)
app.command("retention")(admin_cli.retention)
review_app = typer.Typer(help="Review operations: the exams' auto-clear.", no_args_is_help=True)
app.add_typer(review_app, name="review")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: PROCTOR_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: PROCTOR_API_PORT")] = None,
    log_level: LogLevel = "info",
) -> None:
    """Run the HTTP API and the review UI (and the embedded S3 server when no PROCTOR_S3_ENDPOINT is set)."""
    configure_logging(log_level)
    settings = Settings()
    with ExitStack() as resources:  # closed in the app's shutdown: see `close_on_shutdown`
        location = resources.enter_context(wiring.s3(settings))
        context = build_context(settings, location)
        resources.callback(context.close)
        api = server_app(context)
        policy = delivery_policy(settings)
        sender = WebhookSender(context.db, policy, channels=delivery_channels(context, policy))
        webhooks = threading.Thread(target=sender.run, name="webhooks", daemon=True)
        webhooks.start()
        resources.callback(webhooks.join, timeout=5)
        resources.callback(sender.stop.set)
        clearer = AutoClearer(context.db, qc_draw_key(wiring.secrets(settings).key), settings.auto_clear_interval_s)
        clearing = threading.Thread(target=clearer.run, name="auto-clear", daemon=True)
        clearing.start()
        resources.callback(clearing.join, timeout=5)
        resources.callback(clearer.stop.set)
        close_on_shutdown(api, resources.close)
        uvicorn.run(
            api,
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_config=None,
            **proxy_options(settings.trusted_proxies),  # the real client's address behind PROCTOR_TRUSTED_PROXIES
        )


@app.command()
def migrate(log_level: LogLevel = "info") -> None:
    """Bring the database to the newest schema, once: processes that run this at the same time take turns (a
    PostgreSQL advisory lock), and the later ones find nothing to do. Deploys run it as a step of its own before
    `serve` and `worker`, with PROCTOR_MIGRATE_ON_START=false for those."""
    configure_logging(log_level)
    settings = Settings()
    try:
        revision = migrate_database(settings.resolved_database_url)
    except OperationalError as exc:
        typer.echo(
            f"cannot migrate the database: {exc.orig}; check PROCTOR_DATABASE_URL and that the database is up", err=True
        )
        raise typer.Exit(1) from None
    typer.echo(f"database schema at revision {revision}")


@review_app.command("auto-clear")
def auto_clear(log_level: LogLevel = "info") -> None:
    """Run the exams' auto-clear once, as `proctor serve` does every PROCTOR_AUTO_CLEAR_INTERVAL_S: clear the
    sessions the detectors found nothing in, of exams whose policy turns it on, or send them to reviewers as QC
    samples at the policy's rate. Prints what it did."""
    configure_logging(log_level)
    settings = Settings()
    tally = auto_clear_sweep(admin_cli.cli_database(settings), utcnow(), qc_draw_key(wiring.secrets(settings).key))
    typer.echo(
        f"auto-clear: {tally.cleared} cleared, {tally.qc_sampled} sent to reviewers as QC samples, "
        f"{tally.lost} claimed by a reviewer first; {tally.exams} exams with auto-clear on had sessions waiting"
    )


app.command("analyze")(process_cli.analyze)
app.command("worker")(process_cli.worker)
app.command("process")(process_cli.process)
app.command("demo")(demo.demo)


if __name__ == "__main__":
    app()
