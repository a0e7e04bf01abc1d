"""The access tokens edX's OAuth client asks for, and checking them on every call.

edX (`edx_rest_api_client.OAuthAPIClient`) POSTs `grant_type=client_credentials&client_id=..&client_secret=..
&token_type=jwt` to `<base_url>/oauth2/access_token` and sends what it gets back as `Authorization: JWT <token>`
until `expires_in` runs out. The token is an HS256 JWT signed with the client's own secret, naming the client
(`sub`), so a check needs no token table: read `sub`, find the client, verify with its secret. Revoking the
client refuses its tokens at once. Token-endpoint errors follow RFC 6749 (`{"error", "error_description"}`);
refused API calls are problem documents (`edx_token_missing`, `edx_token_invalid`, `edx_token_expired`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qs, unquote

import jwt
from sqlalchemy.orm import Session

from core.secrets_box import SecretBox, SecretBoxError
from ingest.schemas import IngestError
from openedx.clients import client_named, client_secret, secret_matches

ISSUER: Final = "proctor-pipeline/openedx"
AUDIENCE: Final = "proctor-pipeline/openedx/api"
ALGORITHM: Final = "HS256"
TOKEN_TTL: Final = timedelta(hours=1)
LEEWAY_S: Final = 30


@dataclass(frozen=True)
class EdxCaller:
    """Who is calling: an edX client (its row id and public client_id) and the tenant it belongs to."""

    client_pk: str
    client_id: str
    tenant_id: str


@dataclass(frozen=True)
class OAuthRefusal(Exception):
    """An RFC 6749 token-endpoint error: `error` is one of its codes, `description` says what to fix."""

    status: int
    error: str
    description: str

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def access_token(client_id: str, secret: str, now: datetime) -> dict[str, Any]:
    """The token response for a client whose credentials were checked."""
    claims = {
        "iss": ISSUER,
        "sub": client_id,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + TOKEN_TTL).timestamp()),
        "jti": secrets.token_hex(16),
    }
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return {"access_token": token, "token_type": "JWT", "expires_in": int(TOKEN_TTL.total_seconds()), "scope": ""}


def token_form(body: bytes, authorization: str | None) -> dict[str, str]:
    """The token request's fields: the form body, with HTTP Basic credentials (client_secret_basic) if sent."""
    try:
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        raise OAuthRefusal(400, "invalid_request", "the body must be an UTF-8 form (x-www-form-urlencoded)") from None
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthRefusal(401, "invalid_client", "the Basic credentials do not decode") from None
        form.setdefault("client_id", unquote(user))
        form.setdefault("client_secret", unquote(password))
    return form


def grant(db: Session, box: SecretBox, form: dict[str, str], now: datetime) -> dict[str, Any]:
    """The token response for a client-credentials request, or `OAuthRefusal`."""
    if form.get("grant_type") != "client_credentials":
        raise OAuthRefusal(
            400, "unsupported_grant_type", f"grant_type must be client_credentials, got {form.get('grant_type')!r}"
        )
    if form.get("token_type", "jwt").lower() not in ("jwt", "bearer"):
        raise OAuthRefusal(400, "invalid_request", "token_type may be jwt (edX's default) or bearer")
    client_id, presented = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id or not presented:
        raise OAuthRefusal(400, "invalid_request", "send client_id and client_secret (form fields or HTTP Basic)")
    client = client_named(db, client_id)
    refused = OAuthRefusal(401, "invalid_client", "unknown client_id or wrong client_secret")
    if client is None:
        raise refused
    if client.revoked_at is not None:
        raise OAuthRefusal(401, "invalid_client", "this client was revoked: ask the operator for a new one")
    if not secret_matches(box, client, presented):
        raise refused
    return access_token(client.client_id, presented, now)


def _refused(code: str, message: str) -> IngestError:
    return IngestError(401, code, message)


def bearer(authorization: str | None) -> str:
    """The token of `Authorization: JWT <token>` (edX's) or `Bearer <token>`."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() not in ("jwt", "bearer") or not token.strip():
        raise _refused(
            "edx_token_missing", "send 'Authorization: JWT <access token>' from POST /openedx/oauth2/access_token"
        )
    return token.strip()


def verify(db: Session, box: SecretBox, token: str) -> EdxCaller:
    """The client a token was issued to; refuses a forged, expired or revoked client's token."""
    invalid = _refused("edx_token_invalid", "the access token is not one we issued: get a new one")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise invalid from None
    client = client_named(db, str(unverified.get("sub", "")))
    if client is None:
        raise invalid
    if client.revoked_at is not None:
        raise _refused("edx_token_invalid", "this client was revoked: ask the operator for a new one")
    try:
        jwt.decode(
            token,
            client_secret(box, client),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise _refused("edx_token_expired", "the access token expired: get a new one") from None
    except (jwt.InvalidTokenError, SecretBoxError):
        raise invalid from None
    return EdxCaller(client.id, client.client_id, client.tenant_id)
