"""Operators' commands for the Open edX backend: `proctor openedx add-client | revoke-client | clients`.

An Open edX installation reaches us as a client of one tenant. `add-client` prints its client_id and
client_secret once (the secret is kept sealed, never shown again), to go into the LMS's
`PROCTORING_BACKENDS` settings; the LMS's own OAuth client, for our calls back to it (`ready`, `reviewed`),
is given with `--lms-client-id` and its secret at a prompt or on stdin.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core import audit
from core.db import utcnow
from core.secrets_box import SecretBoxError
from core.settings import Settings
from openedx.clients import ClientError, add_client, revoke_client, tenant_clients
from proctor import wiring
from proctor.admin_cli import cli_actor, cli_database, tenant_named

console = Console()
openedx_app = typer.Typer(help="Open edX installations that use this server as their proctoring backend.")


@openedx_app.command("add-client")
def openedx_add_client(
    tenant_slug: Annotated[str, typer.Argument(help="the tenant whose exams and sessions the LMS's will be")],
    lms_url: Annotated[str, typer.Option("--lms-url", help="the LMS's root URL, e.g. https://lms.example.org")],
    lms_client_id: Annotated[
        str | None, typer.Option("--lms-client-id", help="the OAuth client the LMS gave us, to call it back")
    ] = None,
    lms_client_secret_stdin: Annotated[
        bool, typer.Option("--lms-client-secret-stdin", help="read that client's secret from stdin, not a prompt")
    ] = False,
) -> None:
    """Add an Open edX installation; prints its client_id and client_secret (the secret is shown once)."""
    settings = Settings()
    lms_secret = None
    if lms_client_id:
        lms_secret = (
            sys.stdin.readline().strip()
            if lms_client_secret_stdin
            else typer.prompt("the LMS OAuth client's secret", hide_input=True)
        )
        if not lms_secret:
            raise typer.BadParameter("the LMS OAuth client's secret is empty")
    with cli_database(settings)() as db:
        tenant = tenant_named(db, tenant_slug)
        try:
            issued = add_client(
                db, wiring.secrets(settings), tenant, lms_url, lms_client_id=lms_client_id, lms_client_secret=lms_secret
            )
        except ClientError as exc:
            raise typer.BadParameter(str(exc)) from None
        except SecretBoxError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        audit.record(db, cli_actor(), "add_edx_client", at=utcnow(), tenant_id=tenant.id, client_id=issued.client_id)
        db.commit()
    console.print(
        f"Open edX client of [bold]{tenant_slug}[/] added; put these in the LMS's PROCTORING_BACKENDS "
        "(the secret is not shown again):"
    )
    typer.echo(f"client_id: {issued.client_id}")
    typer.echo(f"client_secret: {issued.client_secret}")


@openedx_app.command("revoke-client")
def openedx_revoke_client(client_id: str) -> None:
    """Revoke a client: its access tokens are refused from the next call on. Audited."""
    with cli_database(Settings())() as db:
        now = utcnow()
        try:
            client = revoke_client(db, client_id, now)
        except ClientError as exc:
            raise typer.BadParameter(str(exc)) from None
        audit.record(db, cli_actor(), "revoke_edx_client", at=now, tenant_id=client.tenant_id, client_id=client_id)
        db.commit()
    console.print(f"Open edX client {client_id} revoked")


@openedx_app.command("clients")
def openedx_clients(tenant_slug: str) -> None:
    """List a tenant's Open edX clients, revoked ones included (no secret is shown)."""
    table = Table("client_id", "LMS", "LMS client", "created", "revoked")
    table.columns[0].no_wrap = True  # copied whole into `revoke-client`
    table.columns[1].overflow = "fold"
    with cli_database(Settings())() as db:
        for client in tenant_clients(db, tenant_named(db, tenant_slug)):
            table.add_row(
                client.client_id,
                client.lms_url,
                client.lms_client_id or "",
                client.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                client.revoked_at.strftime("%Y-%m-%d %H:%M UTC") if client.revoked_at else "",
            )
    console.print(table)
