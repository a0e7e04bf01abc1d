"""RFC 9457 problem responses: the one shape every error of the app takes, whichever layer refuses.

`IngestError` carries the status, the stable `code` and a message that says what to do; this module turns it
into an `application/problem+json` response, and maps the framework's own errors (no such route, method not
allowed, a body it could not parse) onto the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ingest.schemas import IngestError

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


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


def http_refusal(error: HTTPException, method: str, path: str) -> IngestError:
    """What the framework refused (routing, body parsing), as a problem with a code and advice."""
    if isinstance(error, BodyTooLarge):
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


class BodyTooLarge(HTTPException):
    """A streamed body went past its route's limit. Raised from `receive`, so it is an `HTTPException`: the
    framework passes those through its body parsing unchanged, and the app's handler answers with `refusal`."""

    def __init__(self, refusal: IngestError) -> None:
        super().__init__(refusal.status, refusal.message)
        self.refusal = refusal
