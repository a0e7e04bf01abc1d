"""Tenants (exam platforms) and their bearer API keys.

A key reads `pp_<prefix>_<secret>`. The prefix is stored in clear to find the row; only the SHA-256 of the
secret is kept. A fast hash is right here (unlike passwords): the secret is 256 random bits, so there is
nothing to brute-force, and every API call checks one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import ApiKey, Tenant
from storage.keys import safe_identifier

KEY_PREFIX = "pp_"


class TenantExists(ValueError):
    """A tenant with that slug is already registered."""


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
    """The tenant a bearer key belongs to, or None for a malformed, unknown or revoked key."""
    if not presented.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or not prefix or not secret:
        return None
    key = db.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    if key is None or not hmac.compare_digest(key.secret_sha256, _digest(secret)):
        return None
    return key.tenant
