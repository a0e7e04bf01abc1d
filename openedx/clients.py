"""Open edX installations allowed to call the backend: issuing, revoking and checking their credentials.

A client's secret is shown once, when the operator adds the client, and kept sealed (`core.secrets_box`,
purpose `edx_clients.secret:<row id>`): it signs the access tokens we issue it, and edX signs its
instructor-dashboard JWTs with it, so it must be recoverable, not hashed. The LMS's own OAuth secret (for our
calls back to it) is sealed the same way under `edx_clients.lms_secret:<row id>`.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.lms_tables import EdxClient
from core.secrets_box import SecretBox
from core.tables import Tenant

CLIENT_ID_PREFIX = "edx_"


class ClientError(ValueError):
    """A client could not be added or revoked; the message says what to change."""


@dataclass(frozen=True)
class IssuedClient:
    """A new client's credentials, shown to the operator once (only the sealed secret is kept)."""

    row_id: str
    client_id: str
    client_secret: str


def secret_purpose(row_id: str) -> str:
    return f"edx_clients.secret:{row_id}"


def lms_secret_purpose(row_id: str) -> str:
    return f"edx_clients.lms_secret:{row_id}"


def lms_root(url: str) -> str:
    """The LMS's root URL as we store it (no trailing slash); refuses what is not an http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"the LMS URL must be http(s)://host[:port], got {url!r}")
    return url.strip().rstrip("/")


def add_client(
    db: Session,
    box: SecretBox,
    tenant: Tenant,
    lms_url: str,
    *,
    lms_client_id: str | None = None,
    lms_client_secret: str | None = None,
) -> IssuedClient:
    """Add an edX installation as a client of `tenant`, in the caller's transaction (the caller commits)."""
    client = EdxClient(
        tenant_id=tenant.id,
        client_id=CLIENT_ID_PREFIX + secrets.token_hex(12),
        secret_sealed="",
        lms_url=lms_root(lms_url),
        lms_client_id=lms_client_id or None,
    )
    db.add(client)
    db.flush()  # the row id seals the secrets to this row
    secret = secrets.token_urlsafe(32)
    client.secret_sealed = box.seal(secret, secret_purpose(client.id))
    if lms_client_secret:
        client.lms_secret_sealed = box.seal(lms_client_secret, lms_secret_purpose(client.id))
    return IssuedClient(client.id, client.client_id, secret)


def revoke_client(db: Session, client_id: str, now: datetime) -> EdxClient:
    """Refuse the client's tokens from now on (those already issued too); the caller commits."""
    client = db.scalar(select(EdxClient).where(EdxClient.client_id == client_id))
    if client is None:
        raise ClientError(f"no Open edX client {client_id!r}; `proctor openedx clients <tenant>` lists them")
    if client.revoked_at is None:
        client.revoked_at = now
    return client


def tenant_clients(db: Session, tenant: Tenant) -> list[EdxClient]:
    return list(
        db.scalars(select(EdxClient).where(EdxClient.tenant_id == tenant.id).order_by(EdxClient.created_at)).all()
    )


def client_named(db: Session, client_id: str) -> EdxClient | None:
    return db.scalar(select(EdxClient).where(EdxClient.client_id == client_id))


def client_secret(box: SecretBox, client: EdxClient) -> str:
    return box.open(client.secret_sealed, secret_purpose(client.id))


def secret_matches(box: SecretBox, client: EdxClient, presented: str) -> bool:
    return hmac.compare_digest(client_secret(box, client).encode(), presented.encode())
