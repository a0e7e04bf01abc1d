"""Who is calling the platform API: a tenant's bearer key, or a session's upload token on the routes it opens, and
the error responses every route documents.

An upload token (`put_...`, `ingest.upload_tokens`) is what a candidate's browser holds instead of the tenant's
key: `SessionTenantId` takes either on the few routes that upload one session's media; every other route takes
only a tenant key (`TenantId`) and refuses a token with 403 `upload_token_scope`.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.state import platform_api
from core.tenants import KEY_PREFIX, ApiKeyRevoked, tenant_for_key
from ingest.schemas import IngestError, Problem
from ingest.upload_tokens import UPLOAD_TOKEN_PREFIX

BEARER = HTTPBearer(
    scheme_name="bearer",
    description="`Authorization: Bearer <token>`, one of two kinds: the tenant's API key (`pp_...`), which every "
    "`/v1` route takes; or a session's upload token (`put_...`, from `POST /v1/sessions/{session_id}/upload-tokens`), "
    "which only the routes that say so take, for that session alone, until it expires.",
    auto_error=False,  # a missing or malformed header is refused below, as a problem document with advice
)
"""The one security scheme of `/v1`: who calls, whichever kind of token they hold."""
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
# The model registers `Problem` in the document; `api.openapi` makes problem+json the only content of every error.
PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, object]] = {
    code: {**PROBLEM, "description": text}
    for code, text in {
        400: "a body the server could not parse (`bad_request`)",
        401: "missing, unknown or revoked API key (`unauthorized`, `api_key_revoked`)",
        403: "an upload token on a route it does not open (`upload_token_scope`): send the tenant's API key",
        404: "no such session or candidate for this tenant",
        409: "conflict: see `code`",
        413: "too large",
        422: "rejected input: see `code`",
    }.items()
}
UPLOAD_TOKEN_ERRORS: dict[int | str, dict[str, object]] = {
    401: {
        **PROBLEM,
        "description": "missing, unknown or revoked API key (`unauthorized`, `api_key_revoked`), or an upload token "
        "that is unknown or malformed (`upload_token_invalid`) or expired (`upload_token_expired`)",
    },
    403: {**PROBLEM, "description": "an upload token of another session (`upload_token_wrong_session`)"},
}


_KEY_PREFIX_PART = re.compile(rf"{re.escape(KEY_PREFIX)}([0-9a-f]{{1,16}})_")


def presented_credential(request: Request) -> dict[str, str]:
    """What the request's Authorization header showed, for the audit trail of refusals, with nothing secret in it:
    its kind, and an API key's prefix (stored in clear beside the key) when the key is well formed."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if not scheme:
        return {}
    if scheme.lower() != "bearer":
        return {"credential": "other_scheme"}
    value = value.strip()
    if value.startswith(UPLOAD_TOKEN_PREFIX):
        return {"credential": "upload_token"}
    prefix = _KEY_PREFIX_PART.match(value)
    if prefix is not None:
        return {"credential": "api_key", "key_prefix": f"{KEY_PREFIX}{prefix[1]}"}
    return {"credential": "api_key_malformed" if value.startswith(KEY_PREFIX) else "unrecognised"}


def _bearer(credentials: HTTPAuthorizationCredentials | None, *, tokens: bool) -> str:
    if credentials is None:  # no Authorization header, another scheme than Bearer, or no token after it
        or_token = " or this session's upload token ('Authorization: Bearer put_...')" if tokens else ""
        raise IngestError(401, "unauthorized", f"send the tenant's API key as 'Authorization: Bearer pp_...'{or_token}")
    return credentials.credentials


def _key_tenant_id(request: Request, key: str) -> str:
    with platform_api(request).db() as db:
        try:
            tenant = tenant_for_key(db, key)
        except ApiKeyRevoked as exc:
            raise IngestError(
                401, "api_key_revoked", f"{exc}: ask the proctoring service's operator for a new key"
            ) from None
        if tenant is None:
            raise IngestError(401, "unauthorized", "this API key is unknown: check that it was copied whole")
        return tenant.id


def _tenant_id(request: Request, credentials: Bearer) -> str:
    key = _bearer(credentials, tokens=False)
    if key.startswith(UPLOAD_TOKEN_PREFIX):
        raise IngestError(
            403,
            "upload_token_scope",
            f"an upload token opens only its session's GET, add-enrolment, parts and complete routes, not "
            f"{request.method} {request.url.path}: send the tenant's API key ('Authorization: Bearer pp_...')",
        )
    return _key_tenant_id(request, key)


def _session_tenant_id(request: Request, session_id: str, credentials: Bearer) -> str:
    token = _bearer(credentials, tokens=True)
    if token.startswith(UPLOAD_TOKEN_PREFIX):
        return platform_api(request).uploads.upload_token_tenant(token, session_id)
    return _key_tenant_id(request, token)


TenantId = Annotated[str, Depends(_tenant_id)]
"""The tenant whose API key called."""
SessionTenantId = Annotated[str, Depends(_session_tenant_id)]
"""The tenant of the path's `session_id`: its API key, or an upload token of that session, called."""
