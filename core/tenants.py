"""Tenants (exam platforms) and their bearer API keys.

A key reads `pp_<prefix>_<secret>`. The prefix is stored in clear to find the row; only the SHA-256 of the
secret is kept. A fast hash is right here (unlike passwords): the secret is 256 random bits, so there is
nothing to brute-force, and every API call checks one.

A revoked key keeps its row (revoked_at set), so that `proctor tenants keys` still lists it and a platform that
presents it is told it was revoked (`ApiKeyRevoked`), not that it is unknown: only the holder of the whole key,
secret included, learns that.

What a tenant holds (`tenant_usage`) is read under its row's lock (`lock_tenant`) where a quota is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.states import SessionState
from core.tables import ApiKey, ExamSession, Media, Tenant, UploadPart
from core.vocabulary import MediaState
from storage.keys import safe_identifier

KEY_PREFIX = "pp_"


class TenantExists(ValueError):
    """A tenant with that slug is already registered."""


class ApiKeyError(ValueError):
    """No key has that prefix, or it is already revoked; the message says which and what to do."""


class ApiKeyRevoked(Exception):
    """The presented key is genuine (its secret matches) but was revoked at `revoked_at`."""

    def __init__(self, prefix: str, revoked_at: datetime) -> None:
        super().__init__(f"API key {KEY_PREFIX}{prefix} was revoked at {revoked_at.isoformat(timespec='seconds')}")
        self.prefix = prefix
        self.revoked_at = revoked_at


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_tenant(db: Session, slug: str, name: str) -> Tenant:
    safe_identifier("tenant slug", slug)
    if db.scalar(select(Tenant).where(Tenant.slug == slug)) is not None:
        raise TenantExists(f"tenant {slug!r} already exists; use `proctor tenants key {slug}` for a new API key")
    tenant = Tenant(slug=slug, name=name or slug)
    db.add(tenant)
    db.flush()
    return tenant


def issue_api_key(db: Session, tenant: Tenant, label: str = "") -> str:
    """Create a key for `tenant` and return it in clear; it is shown once and never stored."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    db.add(ApiKey(tenant_id=tenant.id, prefix=prefix, secret_sha256=_digest(secret), label=label))
    db.flush()
    return f"{KEY_PREFIX}{prefix}_{secret}"


def tenant_for_key(db: Session, presented: str) -> Tenant | None:
    """The tenant a bearer key belongs to, or None for a malformed or unknown key; `ApiKeyRevoked` for a revoked one."""
    if not presented.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or not prefix or not secret:
        return None
    key = db.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not hmac.compare_digest(key.secret_sha256, _digest(secret)):
        return None
    if key.revoked_at is not None:
        raise ApiKeyRevoked(prefix, key.revoked_at)
    return key.tenant


def key_prefix(text: str) -> str:
    """The prefix an operator means by `text`: a bare prefix, `pp_<prefix>`, or a whole key pasted in."""
    return text.strip().removeprefix(KEY_PREFIX).partition("_")[0]


def tenant_keys(db: Session, tenant: Tenant) -> list[ApiKey]:
    """All keys of `tenant`, revoked ones included, oldest first."""
    return list(db.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_api_key(db: Session, prefix: str, now: datetime) -> ApiKey:
    """Revoke the key with `prefix`: from the next request on, the API refuses it with 401 `api_key_revoked`."""
    key = db.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise ApiKeyError(f"no API key with prefix {prefix!r}; `proctor tenants keys <slug>` lists a tenant's keys")
    if key.revoked_at is not None:
        raise ApiKeyError(
            f"API key {KEY_PREFIX}{prefix} of tenant {key.tenant.slug!r} was already revoked at "
            f"{key.revoked_at.isoformat(timespec='seconds')}"
        )
    key.revoked_at = now
    db.flush()
    return key


OPEN_SESSION_STATES = (SessionState.CREATED.value, SessionState.UPLOADING.value, SessionState.UPLOADED.value)
"""A session that still takes its recordings' uploads: what the open-sessions quota counts."""


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant holds now, as its quotas (`ingest.quotas`) count it.

    `in_flight_bytes`: its files not yet complete (pending or being verified) of sessions neither rejected nor
    erased. `stored_bytes`: every file of its sessions not erased, those in flight included, so that completing
    an upload never takes it past its storage quota. A file counts at its declared size; a streaming one, whose
    size is known only at complete, at the parts it has received. Derived results (evidence frames, thumbnails)
    are not counted."""

    open_sessions: int
    in_flight_bytes: int
    stored_bytes: int


def count_open_sessions(db: Session, tenant_id: str) -> int:
    """Cheap: the (tenant, state) index holds the answer, and the quota bounds how many there are."""
    counted = db.scalar(
        select(func.count())
        .select_from(ExamSession)
        .where(ExamSession.tenant_id == tenant_id, ExamSession.state.in_(OPEN_SESSION_STATES))
    )
    return int(counted or 0)


def tenant_usage(db: Session, tenant_id: str) -> TenantUsage:
    """The exact figures. Bytes are summed over every file of the tenant's sessions not erased, which grows with
    its history (about a second for 100,000 files): `ingest.quotas` reads this only when its cheaper bounds
    would refuse, and the operator's `proctor tenants quota`."""
    live = (ExamSession.tenant_id == tenant_id) & (ExamSession.state != SessionState.DELETED.value)
    in_flight = Media.state.in_([MediaState.PENDING.value, MediaState.VERIFYING.value]) & (
        ExamSession.state != SessionState.REJECTED.value
    )
    declared_in_flight, declared = db.execute(
        select(func.sum(Media.declared_size).filter(in_flight), func.sum(Media.declared_size))
        .join(ExamSession, ExamSession.id == Media.session_id)
        .where(live)
    ).one()
    # A file with no size yet is a streaming one not yet complete: its parts are in flight where its session is.
    received_in_flight, received = db.execute(
        select(
            func.sum(UploadPart.size).filter(ExamSession.state != SessionState.REJECTED.value),
            func.sum(UploadPart.size),
        )
        .join(Media, Media.id == UploadPart.media_id)
        .join(ExamSession, ExamSession.id == Media.session_id)
        .where(live, Media.declared_size.is_(None))
    ).one()
    return TenantUsage(
        count_open_sessions(db, tenant_id),
        int(declared_in_flight or 0) + int(received_in_flight or 0),
        int(declared or 0) + int(received or 0),
    )


def lock_tenant(db: Session, tenant_id: str) -> Tenant | None:
    """The tenant's row, locked until the caller's transaction ends and read afresh, so that checks of its quotas
    take turns.

    On PostgreSQL `SELECT ... FOR NO KEY UPDATE`: as exclusive between lockers as FOR UPDATE, but rows that merely
    reference the tenant (its exams, upload tokens, webhook deliveries) can still be inserted meanwhile. SQLite
    has no row locks, and its driver begins a transaction only at the first write, so a read there holds nothing:
    a no-op UPDATE takes the database's one write lock instead."""
    if db.get_bind().dialect.name == "sqlite":
        db.execute(update(Tenant).where(Tenant.id == tenant_id).values(name=Tenant.name))
    return db.get(Tenant, tenant_id, with_for_update={"key_share": True}, populate_existing=True)
