"""RFC 9457 problem responses: the one shape every error of the app takes, whichever layer refuses.

`IngestError` carries the status, the stable `code` and a message that says what to do; this module turns it
into an `application/problem+json` response, and maps the framework's own errors (no such route, method not
allowed, a body it could not parse) onto the same shape. A refusal that needs response headers (`Retry-After`)
is raised as a `Refused`, which the app's `HTTPException` handler answers with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from ingest.schemas import IngestError
from storage.object_store import StorageUnavailable

_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")  # what a 405's `Allow` may name
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
# How long a client should wait before retrying a call that object storage could not serve. Short: an outage
# is usually a restart, the store has already retried for a few seconds, and clients back off further on
# each 503 they get in a row.
STORAGE_RETRY_AFTER_S = 5


def problem_response(error: IngestError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    sent = dict(headers or {})
    if error.status == 401:
        sent["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        error.problem().model_dump(exclude_none=True),
        status_code=error.status,
        media_type="application/problem+json",
        headers=sent or None,
    )


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The `Allow` header of a 405: every method some route answers at the request's path (the framework's own
    names only the methods of the first route whose path matches)."""
    return ", ".join(
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    )


def http_refusal(error: HTTPException, method: str, path: str) -> IngestError:
    """What the framework refused (routing, body parsing), as a problem with a code and advice."""
    if isinstance(error, Refused):
        return error.refusal
    code = _HTTP_CODES.get(error.status_code, "http_error")
    if error.status_code == 404:
        message = f"nothing answers {method} {path}: the API's routes are listed in its OpenAPI document, /openapi.json"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{method} is not allowed on {path}; use {allowed or 'another method'}"
    else:
        message = f"{error.detail}: send it as the OpenAPI document, /openapi.json, describes"
    return IngestError(error.status_code, code, message)


def internal_error(method: str, path: str) -> IngestError:
    return IngestError(
        500,
        "internal_error",
        f"the server failed on {method} {path}: retry later, and if it persists, report it to the operator "
        "with the time of the request (the server's log holds the cause)",
    )


def storage_unavailable(error: StorageUnavailable) -> Refused:
    """Object storage is down or failing (a 503 to retry), not a fault of the server or of the request."""
    return Refused(
        IngestError(
            503,
            "storage_unavailable",
            f"object storage is not answering ({error.operation} failed); nothing already stored was lost: "
            f"retry after {STORAGE_RETRY_AFTER_S} s (an upload resumes from the parts already stored)",
            {"retry_after_s": STORAGE_RETRY_AFTER_S},
        ),
        {"Retry-After": str(STORAGE_RETRY_AFTER_S)},
    )


class Refused(HTTPException):
    """A refusal raised as the framework's `HTTPException`, so that the app's handler answers it with `refusal`
    as the problem document and `headers` on the response."""

    def __init__(self, refusal: IngestError, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(refusal.status, refusal.message, dict(headers) if headers else None)
        self.refusal = refusal


class BodyTooLarge(Refused):
    """A streamed body went past its route's limit. Raised from `receive`, so it is an `HTTPException`: the
    framework passes those through its body parsing unchanged, and the app's handler answers with `refusal`."""
