"""The app's OpenAPI document, `/openapi.json`: what a generated client and a schema-driven fuzzer read.

FastAPI generates it from the routes (their `operation_id`s, `responses` and the `bearer` security scheme of
`api.auth`); `PlatformApp` finishes it once, in one pure step, `finish_document`:

- every error response (4xx, 5xx) with content carries the `Problem` schema as `application/problem+json`, and
  nothing else. The framework declares a route's error model as `application/json`, and the 422 it adds on
  its own as `HTTPValidationError`; the app sends every error as a problem document (`api.problems`).
- `registerSession`'s 201 and 200 responses link their `id` to the `session_id` of every operation that takes
  one (OpenAPI links: what a generated client documents and a stateful fuzzer follows).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
REGISTER_SESSION = "registerSession"  # the operation whose response's `id` is every other's `session_id`
_FRAMEWORK_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")  # FastAPI's 422 body, never sent here
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


class PlatformApp(FastAPI):
    """A FastAPI app whose OpenAPI document is `finish_document` of the one FastAPI generates."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = finish_document(super().openapi())
        return self.openapi_schema


def finish_document(generated: Mapping[str, Any]) -> dict[str, Any]:
    """The generated document with problem documents as every error's content and the session links added."""
    document = copy.deepcopy(dict(generated))
    operations = list(_operations(document))
    for operation in operations:
        for status, response in operation.get("responses", {}).items():
            if str(status)[:1] in "45" and "content" in response:
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}}
    schemas = document.get("components", {}).get("schemas", {})
    for name in _FRAMEWORK_ERROR_SCHEMAS:
        schemas.pop(name, None)
    _link_session_ids(operations)
    return document


def _operations(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for path_item in document.get("paths", {}).values():
        yield from (operation for method, operation in path_item.items() if method in _METHODS)


def _takes_session_id(operation: Mapping[str, Any]) -> bool:
    return any(p.get("in") == "path" and p.get("name") == "session_id" for p in operation.get("parameters", []))


def _link_session_ids(operations: list[dict[str, Any]]) -> None:
    register = next((op for op in operations if op.get("operationId") == REGISTER_SESSION), None)
    if register is None:
        return
    links = {
        op["operationId"]: {
            "operationId": op["operationId"],
            "parameters": {"path.session_id": "$response.body#/id"},
            "description": f"the registered session's `id` is the `session_id` of `{op['operationId']}`",
        }
        for op in operations
        if _takes_session_id(op) and "operationId" in op
    }
    for status in ("200", "201"):
        if status in register.get("responses", {}):
            register["responses"][status]["links"] = links
