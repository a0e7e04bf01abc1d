"""Who is calling the platform API: a tenant's bearer key, and the error responses every route documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from api.state import platform_api
from core.tenants import ApiKeyRevoked, tenant_for_key
from ingest.schemas import IngestError, Problem

PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, object]] = {
    code: {**PROBLEM, "description": text}
    for code, text in {
        401: "missing, unknown or revoked API key (`unauthorized`, `api_key_revoked`)",
        404: "no such session or candidate for this tenant",
        409: "conflict: see `code`",
        413: "too large",
        422: "rejected input: see `code`",
    }.items()
}


def _tenant_id(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise IngestError(401, "unauthorized", "send the tenant's API key as 'Authorization: Bearer pp_...'")
    with platform_api(request).db() as db:
        try:
            tenant = tenant_for_key(db, token.strip())
        except ApiKeyRevoked as exc:
            raise IngestError(
                401, "api_key_revoked", f"{exc}: ask the proctoring service's operator for a new key"
            ) from None
        if tenant is None:
            raise IngestError(401, "unauthorized", "this API key is unknown: check that it was copied whole")
        return tenant.id


TenantId = Annotated[str, Depends(_tenant_id)]
