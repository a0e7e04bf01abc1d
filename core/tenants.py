"""Tenants (exam platforms) and their bearer API keys.

A key reads `pp_<prefix>_<secret>`. The prefix is stored in clear to find the row; only the SHA-256 of the
secret is kept. A fast hash is right here (unlike passwords): the secret is 256 random bits, so there is
nothing to brute-force, and every API call checks one.

A revoked key keeps its row (revoked_at set), so that `proctor tenants keys` still lists it and a platform that
presents it is told it was revoked (`ApiKeyRevoked`), not that it is unknown: only the holder of the whole key,
secret included, learns that.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import ApiKey, Tenant
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
