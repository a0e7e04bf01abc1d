"""`proctor users ...` and `proctor tenants webhook`: the review stage's commands."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import select

from ingest.cli import _db
from ingest.db import Tenant, User
from ingest.settings import Settings
from review_ui.accounts import AccountError, Role, add_user, assign
from review_ui.webhooks import new_secret

console = Console()
users_app = typer.Typer(help="Reviewers, integrity officers and admins of the review UI.", no_args_is_help=True)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[Role, typer.Option(help="reviewer, officer or admin")] = Role.REVIEWER,
    tenant: Annotated[list[str] | None, typer.Option(help="tenant slug this user may see (repeatable)")] = None,
    exam: Annotated[str | None, typer.Option(help="only this exam of the --tenant (its external id)")] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin instead of a prompt")] = False,
) -> None:
    """Create an account. Reviewers and officers see only the tenants (or exam) they are assigned to."""
    if exam and len(tenant or []) != 1:
        raise typer.BadParameter("--exam needs exactly one --tenant")
    password = _password(password_stdin)
    with _db(Settings())() as db:
        try:
            user = add_user(db, username, password, role)
            for slug in tenant or []:
                assign(db, user, slug, exam)
        except (AccountError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from None
        db.commit()
    sees = "everything" if role is Role.ADMIN else ", ".join(tenant or []) or "nothing yet (use `proctor users assign`)"
    console.print(f"user [bold]{username}[/] ({role.value}) created; sees {sees}")


@users_app.command("assign")
def users_assign(
    username: str,
    tenant: Annotated[str, typer.Option(help="tenant slug")],
    exam: Annotated[str | None, typer.Option(help="only this exam (external id)")] = None,
) -> None:
    """Let an existing user see another tenant, or one exam of it."""
    with _db(Settings())() as db:
        user = db.scalar(select(User).where(User.username == username))
        if user is None:
            raise typer.BadParameter(f"no user {username!r}")
        try:
            assign(db, user, tenant, exam)
        except AccountError as exc:
            raise typer.BadParameter(str(exc)) from None
        db.commit()
    console.print(f"{username} now sees {tenant}{' / ' + exam if exam else ''}")


def tenants_webhook(
    slug: str, url: Annotated[str, typer.Argument(help="https://... that receives review.final")]
) -> None:
    """Set where final review outcomes are POSTed; prints the signing secret (shown once)."""
    if not url.startswith(("https://", "http://")):
        raise typer.BadParameter("the webhook URL must start with https:// (or http:// on a private network)")
    secret = new_secret()
    with _db(Settings())() as db:
        tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            raise typer.BadParameter(f"no tenant {slug!r}")
        tenant.webhook_url, tenant.webhook_secret = url, secret
        db.commit()
    console.print(f"webhook of [bold]{slug}[/] set; verify X-Proctor-Signature with this secret:")
    typer.echo(secret)
