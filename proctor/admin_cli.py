"""Operators' commands: `proctor tenants ...`, `proctor users ...`, `proctor audit ...` and `proctor retention`."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.audit import Anchor, AnchorError, anchor_line, anchor_of, parse_anchor_line, verify_trail
from core.context import build_context
from core.db import make_engine, make_sessionmaker, migrate, utcnow
from core.erasure import erase_expired
from core.erasure_sweep import sweep
from core.secrets_box import SecretBoxError
from core.settings import Settings
from core.tables import Tenant, User
from core.tenants import (
    KEY_PREFIX,
    ApiKeyError,
    TenantExists,
    add_tenant,
    issue_api_key,
    key_prefix,
    revoke_api_key,
    tenant_keys,
    tenant_usage,
)
from core.vocabulary import Role
from ingest.quotas import GIB, Quota, quota_standings, set_own_limits
from proctor import wiring
from review_ui.accounts import AccountError, add_user, assign, disable_user, enable_user, set_password, user_named
from review_ui.webhook_destinations import DestinationRefused, resolve_destination, system_resolve
from review_ui.webhooks import new_secret, seal_secret

console = Console()
tenants_app = typer.Typer(help="Exam platforms (tenants) and their API keys.", no_args_is_help=True)
users_app = typer.Typer(help="Reviewers, integrity officers and admins of the review UI.", no_args_is_help=True)
audit_app = typer.Typer(
    help="The hash-chained audit trail: verify it end to end, and anchor its head for auditors.", no_args_is_help=True
)


def cli_database(settings: Settings) -> sessionmaker[Session]:
    url = settings.resolved_database_url
    migrate(url)
    return make_sessionmaker(make_engine(url))


def cli_actor() -> str:
    """Who ran this command, for the audit trail: `cli:<login name>` (`cli:uid-<n>` where the uid has no name)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return f"cli:uid-{os.getuid()}"


def tenant_named(db: Session, slug: str) -> Tenant:
    tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise typer.BadParameter(f"no tenant {slug!r}; `proctor tenants list` shows them")
    return tenant


def _when(at: datetime | None) -> str:
    """A time short enough for an 80-column table (the audit trail has it to the microsecond)."""
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")


@tenants_app.command("add")
def tenants_add(slug: str, name: str = typer.Option("", help="display name")) -> None:
    """Register an exam platform and print its first API key (shown once)."""
    settings = Settings()
    with cli_database(settings)() as db:
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
    with cli_database(settings)() as db:
        key = issue_api_key(db, tenant_named(db, slug), label=label)
        db.commit()
    typer.echo(key)


@tenants_app.command("keys")
def tenants_keys(slug: str) -> None:
    """List a tenant's API keys, revoked ones included: prefix, label, created, revoked (no secret is stored)."""
    table = Table("prefix", "label", "created", "revoked")
    for column in (0, 2, 3):
        table.columns[column].no_wrap = True
    with cli_database(Settings())() as db:
        for key in tenant_keys(db, tenant_named(db, slug)):
            table.add_row(f"{KEY_PREFIX}{key.prefix}", key.label, _when(key.created_at), _when(key.revoked_at))
    console.print(table)


@tenants_app.command("revoke-key")
def tenants_revoke_key(
    prefix: Annotated[str, typer.Argument(help="the key's prefix, as `proctor tenants keys` lists it (pp_...)")],
) -> None:
    """Revoke an API key: the API refuses it from the next request on (401 api_key_revoked). Audited."""
    with cli_database(Settings())() as db:
        now = utcnow()
        try:
            key = revoke_api_key(db, key_prefix(prefix), now)
        except ApiKeyError as exc:
            raise typer.BadParameter(str(exc)) from None
        slug = key.tenant.slug
        left = sum(1 for other in tenant_keys(db, key.tenant) if other.revoked_at is None)
        actor = cli_actor()
        audit.record(db, actor, "revoke_api_key", at=now, tenant_id=key.tenant_id, prefix=key.prefix, label=key.label)
        db.commit()
    console.print(f"API key {KEY_PREFIX}{key.prefix} of [bold]{slug}[/] revoked")
    if not left:
        console.print(f"{slug} has no API key left: `proctor tenants key {slug}` issues a new one")


def _amount(quota: Quota, amount: int) -> str:
    return f"{amount:,}" if quota is Quota.OPEN_SESSIONS else f"{amount / GIB:,.2f} GiB"


@tenants_app.command("quota")
def tenants_quota(
    slug: str,
    open_sessions: Annotated[
        int | None, typer.Option(min=0, help="sessions registered whose recordings are not all uploaded")
    ] = None,
    in_flight_gb: Annotated[float | None, typer.Option(min=0, help="GiB of files not yet complete")] = None,
    storage_gb: Annotated[float | None, typer.Option(min=0, help="GiB stored for sessions not erased")] = None,
) -> None:
    """Show a tenant's quotas and what it holds now; the options set its own limits (audited). The API refuses
    what would go past one with 403 quota_exceeded; lowering one refuses new work only."""
    settings = Settings()
    wanted = {Quota.OPEN_SESSIONS: open_sessions, Quota.IN_FLIGHT_BYTES: in_flight_gb, Quota.STORAGE_BYTES: storage_gb}
    limits = {q: int(v) if q is Quota.OPEN_SESSIONS else round(v * GIB) for q, v in wanted.items() if v is not None}
    with cli_database(settings)() as db:
        tenant = tenant_named(db, slug)
        changed = set_own_limits(tenant, limits)
        if changed:
            audit.record(db, cli_actor(), "set_tenant_quota", at=utcnow(), tenant_id=tenant.id, changes=changed)
            db.commit()
        standings = quota_standings(tenant, wiring.quota_limits(settings), tenant_usage(db, tenant.id))
    table = Table("quota", "limit", "set by", "in use")
    for standing in standings:
        limit, in_use = _amount(standing.quota, standing.limit), _amount(standing.quota, standing.in_use)
        table.add_row(standing.quota.value, limit, slug if standing.own else "default", in_use)
    console.print(table)
    if changed:
        console.print(f"quotas of [bold]{slug}[/] set: {', '.join(changed)}")


@tenants_app.command("list")
def tenants_list() -> None:
    settings = Settings()
    table = Table("slug", "name", "created")
    with cli_database(settings)() as db:
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
    with cli_database(Settings())() as db:
        try:
            user = add_user(db, username, password, role)
            for slug in tenant or []:
                assign(db, user, slug, exam)
        except (AccountError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from None
        db.commit()
    sees = "everything" if role is Role.ADMIN else ", ".join(tenant or []) or "nothing yet (use `proctor users assign`)"
    console.print(f"user [bold]{username}[/] ({role.value}) created; sees {sees}")


@users_app.command("disable")
def users_disable(username: str) -> None:
    """Refuse a user's sign-ins from now on, and sign them out of every browser at once. Audited."""
    with cli_database(Settings())() as db:
        now = utcnow()
        try:
            closed = disable_user(db, user_named(db, username), now)
        except AccountError as exc:
            raise typer.BadParameter(str(exc)) from None
        audit.record(db, cli_actor(), "disable_user", at=now, username=username, sessions_closed=closed)
        db.commit()
    console.print(f"user [bold]{username}[/] disabled; {closed} browser session(s) closed")


@users_app.command("enable")
def users_enable(username: str) -> None:
    """Let a disabled user sign in again, with the password they had. Audited."""
    with cli_database(Settings())() as db:
        try:
            enable_user(db, user_named(db, username))
        except AccountError as exc:
            raise typer.BadParameter(str(exc)) from None
        audit.record(db, cli_actor(), "enable_user", at=utcnow(), username=username)
        db.commit()
    console.print(f"user [bold]{username}[/] enabled")


@users_app.command("reset-password")
def users_reset_password(
    username: str,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin instead of a prompt")] = False,
) -> None:
    """Give a user a new password, lift a lockout, and sign them out of every browser. Audited."""
    password = _password(password_stdin)
    with cli_database(Settings())() as db:
        try:
            closed = set_password(db, user_named(db, username), password)
        except AccountError as exc:
            raise typer.BadParameter(str(exc)) from None
        audit.record(db, cli_actor(), "reset_password", at=utcnow(), username=username, sessions_closed=closed)
        db.commit()
    console.print(f"password of [bold]{username}[/] reset; {closed} browser session(s) closed")


@users_app.command("assign")
def users_assign(
    username: str,
    tenant: Annotated[str, typer.Option(help="tenant slug")],
    exam: Annotated[str | None, typer.Option(help="only this exam (external id)")] = None,
) -> None:
    """Let an existing user see another tenant, or one exam of it."""
    with cli_database(Settings())() as db:
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
    """Set where final review outcomes are POSTed; prints the signing secret (shown once, stored sealed)."""
    settings = Settings()
    policy = wiring.delivery_policy(settings)
    try:  # checked here for a quick answer, and again before every delivery (DNS answers change)
        asyncio.run(resolve_destination(url, policy.destinations, system_resolve))
    except DestinationRefused as exc:
        raise typer.BadParameter(str(exc)) from None
    except OSError as exc:
        typer.echo(f"warning: {url} does not resolve now ({exc}); deliveries are retried until it does", err=True)
    secret = new_secret()
    with cli_database(settings)() as db:
        tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            raise typer.BadParameter(f"no tenant {slug!r}")
        try:
            tenant.webhook_url, tenant.webhook_secret = url, seal_secret(policy.secrets, tenant.id, secret)
        except SecretBoxError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        db.commit()
    console.print(
        f"webhook of [bold]{slug}[/] set; deliveries are signed per Standard Webhooks (webhook-id, "
        "webhook-timestamp, webhook-signature): verify them with this secret:"
    )
    typer.echo(secret)


def retention(
    days: Annotated[
        int | None, typer.Option(min=1, help="retention period in days; default: PROCTOR_RETENTION_DAYS")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what it would erase and sweep; erase and sweep nothing")
    ] = False,
    sweep_only: Annotated[
        bool,
        typer.Option(
            "--sweep-only", help="only sweep what is left under erased sessions or under none (needs no period)"
        ),
    ] = False,
) -> None:
    """Erase the recordings and results of sessions past the retention period, and candidates' enrolments that
    no session within the period uses; then sweep the objects left under erased sessions, or under no session
    at all, for a day (`core.erasure_sweep`). Run it daily (cron, a CronJob). Exits 1 when something could not
    be erased or swept: each is named on stderr, the rest is done, and the next run tries again."""
    settings = Settings()
    period = days if days is not None else settings.retention_days
    if period is None and not sweep_only:
        raise typer.BadParameter("no retention period: set PROCTOR_RETENTION_DAYS or pass --days (or --sweep-only)")
    with wiring.s3(settings) as location:
        context = build_context(settings, location)
        try:
            now = utcnow()
            run = None
            if period is not None and not sweep_only:
                run = erase_expired(context.db, context.store, period, now, dry_run=dry_run)
            swept = sweep(context.db, context.store, now, dry_run=dry_run)
        finally:
            context.close()
    verb = "would erase" if dry_run else "erased"
    if run is not None:
        for item in run.sessions:  # one plain line each, for cron logs
            typer.echo(f"{verb} session {item.session_id} tenant {item.tenant_id} since {item.since.isoformat()}")
        for enrolment in run.enrolments:
            typer.echo(
                f"{verb} enrolment {enrolment.enrolment_id} tenant {enrolment.tenant_id} "
                f"since {enrolment.created_at.isoformat()}"
            )
        for failure in run.failed:
            typer.echo(
                f"could not erase {failure.kind} {failure.id} tenant {failure.tenant_id}: {failure.error}", err=True
            )
        typer.echo(
            f"{verb} {len(run.sessions)} session(s) and {len(run.enrolments)} enrolment(s) past the {period}-day "
            f"retention period{f'; {len(run.failed)} could not be erased' if run.failed else ''}"
        )
    sweep_verb = "would sweep" if dry_run else "swept"
    for gone in swept.swept:
        typer.echo(f"{sweep_verb} {gone.objects} object(s) under {gone.prefix} ({gone.reason.value})")
    for left in swept.failed:
        typer.echo(f"could not sweep {left.prefix}: {left.error}", err=True)
    typer.echo(
        f"{sweep_verb} {sum(g.objects for g in swept.swept)} object(s) under {len(swept.swept)} session prefix(es) "
        "of erased sessions or of none"
    )
    if (run is not None and run.failed) or swept.failed:
        raise typer.Exit(1)


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
    with cli_database(settings)() as db:
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
    with cli_database(settings)() as db:
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
