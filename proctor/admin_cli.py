"""Operators' commands: `proctor tenants ...`, `proctor users ...`, `proctor audit ...` and `proctor retention`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import Anchor, AnchorError, anchor_line, anchor_of, parse_anchor_line, verify_trail
from core.context import build_context
from core.db import make_engine, make_sessionmaker, migrate, utcnow
from core.erasure import erase_expired
from core.settings import Settings
from core.tables import Tenant, User
from core.tenants import TenantExists, add_tenant, issue_api_key
from core.vocabulary import Role
from proctor import wiring
from review_ui.accounts import AccountError, add_user, assign
from review_ui.webhooks import new_secret

console = Console()
tenants_app = typer.Typer(help="Exam platforms (tenants) and their API keys.", no_args_is_help=True)
users_app = typer.Typer(help="Reviewers, integrity officers and admins of the review UI.", no_args_is_help=True)
audit_app = typer.Typer(
    help="The hash-chained audit trail: verify it end to end, and anchor its head for auditors.", no_args_is_help=True
)


def _db(settings: Settings) -> sessionmaker[Session]:
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


@tenants_app.command("webhook")
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


def retention(
    days: Annotated[
        int | None, typer.Option(min=1, help="retention period in days; default: PROCTOR_RETENTION_DAYS")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list the sessions and enrolments it would erase; erase nothing")
    ] = False,
) -> None:
    """Erase the recordings and results of sessions past the retention period, and candidates' enrolments that
    no session within the period uses. Run it daily (cron, a CronJob)."""
    settings = Settings()
    period = days if days is not None else settings.retention_days
    if period is None:
        raise typer.BadParameter("no retention period: set PROCTOR_RETENTION_DAYS or pass --days")
    with wiring.s3(settings) as location:
        context = build_context(settings, location)
        try:
            run = erase_expired(context.db, context.store, period, utcnow(), dry_run=dry_run)
        finally:
            context.close()
    verb = "would erase" if dry_run else "erased"
    for item in run.sessions:  # one plain line each, for cron logs
        typer.echo(f"{verb} session {item.session_id} tenant {item.tenant_id} since {item.since.isoformat()}")
    for enrolment in run.enrolments:
        typer.echo(
            f"{verb} enrolment {enrolment.enrolment_id} tenant {enrolment.tenant_id} "
            f"since {enrolment.created_at.isoformat()}"
        )
    typer.echo(
        f"{verb} {len(run.sessions)} session(s) and {len(run.enrolments)} enrolment(s) past the {period}-day "
        "retention period"
    )


def _anchor_key(settings: Settings) -> bytes | None:
    return None if settings.audit_anchor_key is None else settings.audit_anchor_key.get_secret_value().encode()


def _read_anchors(path: Path, key: bytes | None) -> list[Anchor]:
    anchors = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            anchors.append(parse_anchor_line(line, key))
        except AnchorError as exc:
            raise typer.BadParameter(f"{path}, line {number}: {exc}", param_hint="--anchor") from None
    if not anchors:
        raise typer.BadParameter(
            f"{path} holds no anchor: pass a file `proctor audit anchor` wrote", param_hint="--anchor"
        )
    return anchors


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="a file of lines from `proctor audit anchor`: each anchored entry must still be in the trail, "
            "unchanged (nothing was cut from the end, nothing before it rewritten)",
        ),
    ] = None,
) -> None:
    """Walk the whole audit trail. Exits 1 naming the first entry that was edited, deleted, inserted, moved or
    cut off since it was written (or since an anchor); exits 0 when every entry checks out."""
    settings = Settings()
    anchors = [] if anchor is None else _read_anchors(anchor, _anchor_key(settings))
    with _db(settings)() as db:
        verification = verify_trail(db, anchors)
    if verification.problem is not None:
        typer.echo(
            f"audit trail BROKEN after {verification.verified} intact entries: {verification.problem.describe()}",
            err=True,
        )
        raise typer.Exit(1)
    head = verification.head
    ends = "" if head is None else f", head seq {head.fields.seq} (entry id {head.id}) hash {head.hash}"
    checked = f"; {len(anchors)} anchor(s) still in the chain" if anchors else ""
    typer.echo(f"audit trail intact: {verification.verified} entries verified{ends}{checked}")


@audit_app.command("anchor")
def audit_anchor(
    append_to: Annotated[
        Path | None, typer.Option(dir_okay=False, help="also append the line to this file (the auditor's copy)")
    ] = None,
) -> None:
    """Print the head of the verified trail as one JSON line (HMAC-signed when PROCTOR_AUDIT_ANCHOR_KEY is set)
    for an auditor to keep outside this database; `proctor audit verify --anchor FILE` checks it later."""
    settings = Settings()
    with _db(settings)() as db:
        verification = verify_trail(db)
    if verification.problem is not None:
        typer.echo(f"refusing to anchor a broken audit trail: {verification.problem.describe()}", err=True)
        raise typer.Exit(1)
    if verification.head is None:
        typer.echo("nothing to anchor: the audit trail is empty", err=True)
        raise typer.Exit(1)
    line = anchor_line(anchor_of(verification.head, utcnow()), _anchor_key(settings))
    if append_to is not None:
        with append_to.open("a") as kept:
            kept.write(line + "\n")
    typer.echo(line)
