"""The OpenAPI document is the contract platforms integrate against: valid OpenAPI, one `bearer` scheme, problem
documents for every error, the part upload's binary body, stable operation ids and links from a registered
session. Schemathesis fuzzes the served API against it, and a client generated from it uploads a session."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from core.context import AppContext
from proctor.wiring import server_app
from tests.support import media as mf
from tests.support.platform import Api, Caller, session_body, sha

PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
OPERATION_IDS = {
    ("post", "/v1/sessions"): "registerSession",
    ("get", "/v1/sessions/{session_id}"): "getSession",
    ("delete", "/v1/sessions/{session_id}"): "deleteSession",
    ("post", "/v1/sessions/{session_id}/upload-tokens"): "issueUploadToken",
    ("post", "/v1/sessions/{session_id}/media"): "addMedia",
    ("get", "/v1/sessions/{session_id}/media/{kind}/parts"): "listParts",
    ("post", "/v1/sessions/{session_id}/media/{kind}/parts/presign"): "presignParts",
    ("put", "/v1/sessions/{session_id}/media/{kind}/parts/{part_number}"): "uploadPart",
    ("post", "/v1/sessions/{session_id}/media/{kind}/complete"): "completeMedia",
    ("get", "/v1/sessions/{session_id}/review"): "getReview",
    ("post", "/v1/sessions/{session_id}/system-check"): "systemCheck",
    ("get", "/v1/candidates/{candidate_id}/enrolment"): "getEnrolment",
    ("delete", "/v1/candidates/{candidate_id}"): "deleteCandidate",
    ("get", "/v1/exams/{exam_id}/policy"): "getExamPolicy",
    ("put", "/v1/exams/{exam_id}/policy"): "setExamPolicy",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
}
UPLOAD_TOKEN_OPERATIONS = {"getSession", "addMedia", "listParts", "uploadPart", "completeMedia", "systemCheck"}
SESSION_OPERATIONS = {
    op for (_, path), op in OPERATION_IDS.items() if "{session_id}" in path
}  # what a registered session's `id` opens


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite alone: the document does not depend on the database, and the fuzz run is sized for one pass."""
    return f"sqlite:///{tmp_path / 'proctor.db'}"


@pytest.fixture
def document(api: Api) -> dict[str, Any]:
    """The document as the platform API serves it."""
    served: dict[str, Any] = httpx.get(f"{api.url}/openapi.json").json()
    return served


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_the_served_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_the_whole_servers_document_is_valid_with_stable_operation_ids(context: AppContext) -> None:
    """What `proctor serve` serves, the Open edX backend included; the review UI stays out of it."""
    whole = server_app(context).openapi()
    validate(whole)
    ids = [operation.get("operationId", "") for _, _, operation in operations(whole)]
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert not [path for path in whole["paths"] if path.startswith("/review")]
    edx = [operation["operationId"] for _, path, operation in operations(whole) if path.startswith("/openedx")]
    assert edx and all(i.startswith("edx") for i in edx), edx
    for _, path, operation in operations(whole):  # the OAuth token endpoint's RFC 6749 errors declare no content
        for status, response in operation["responses"].items():
            assert status[0] not in "45" or response.get("content", PROBLEM_CONTENT) == PROBLEM_CONTENT, path


def test_every_operation_has_its_stable_id(document: dict[str, Any]) -> None:
    assert {(method, path): op["operationId"] for method, path, op in operations(document)} == OPERATION_IDS


def test_every_v1_operation_takes_the_bearer_scheme_and_ops_endpoints_none(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "pp_" in scheme["description"] and "put_" in scheme["description"], "both kinds of token are named"
    assert len(document["components"]["securitySchemes"]) == 1
    for _, path, operation in operations(document):
        if path.startswith("/v1/"):
            assert operation["security"] == [{"bearer": []}], path
            assert "authorization" not in {p["name"].lower() for p in operation.get("parameters", [])}, path
        else:
            assert "security" not in operation, path
        if operation["operationId"] in UPLOAD_TOKEN_OPERATIONS:
            assert "upload token" in operation["description"], operation["operationId"]


def test_every_error_is_a_problem_document(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "ValidationError" not in document["components"]["schemas"]
    for _, path, operation in operations(document):
        errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
        if path.startswith("/v1/"):
            assert {"401", "404", "422"} <= set(errors), path
        for status, response in errors.items():
            assert response["content"] == PROBLEM_CONTENT, (path, status)
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code", "detail"} <= set(problem["required"])


def test_the_problem_content_type_is_what_errors_carry(api: Api, caller: Caller) -> None:
    """The document says problem+json because the responses carry it: a missing key, a validation error."""
    unauthorized = httpx.post(f"{api.url}/v1/sessions", json={"exam_id": 1})
    invalid = caller.register({"exam_id": 1})
    assert (unauthorized.status_code, invalid.status_code) == (401, 422)
    for refused in (unauthorized, invalid):
        assert refused.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("OPTIONS", "/v1/sessions/s-1", "DELETE, GET"), ("GET", "/v1/sessions", "POST")],
)
def test_a_method_the_path_lacks_is_405_with_every_method_it_has(
    caller: Caller, method: str, path: str, allowed: str
) -> None:
    refused = caller.http.request(method, path)
    assert (refused.status_code, refused.headers["allow"]) == (405, allowed)
    assert refused.json()["code"] == "method_not_allowed"


def test_the_part_upload_declares_its_binary_body_and_checksum_header(document: dict[str, Any]) -> None:
    upload = document["paths"]["/v1/sessions/{session_id}/media/{kind}/parts/{part_number}"]["put"]
    assert upload["requestBody"]["required"] is True
    assert upload["requestBody"]["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    headers = {p["name"]: p for p in upload["parameters"] if p["in"] == "header"}
    assert headers["X-Part-SHA256"]["required"] is False


def test_a_registered_sessions_id_links_to_every_operation_on_a_session(document: dict[str, Any]) -> None:
    register = document["paths"]["/v1/sessions"]["post"]
    ids = {operation["operationId"] for _, _, operation in operations(document)}
    for status in ("201", "200"):
        links = register["responses"][status]["links"]
        assert set(links) == SESSION_OPERATIONS
        for name, link in links.items():
            assert link["operationId"] == name and name in ids
            assert link["parameters"] == {"path.session_id": "$response.body#/id"}


def _registered(api: Api, key: str, *, candidate_id: str) -> str:
    webcam = {"kind": "webcam", "content_type": "video/webm", "streaming": True}
    response = httpx.post(
        f"{api.url}/v1/sessions",
        json=session_body(webcam, candidate_id=candidate_id),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


FUZZ_CONFIG = """
# Every check: no 5xx, documented status codes, content types, headers and bodies, auth enforced, 405s.
checks.enabled = true
generation.max-examples = 100
generation.deterministic = true  # the same cases on every run, and nothing stored between runs
workers = 1
headers = {{ Authorization = "Bearer {key}" }}
# Real ids, so that the generated requests reach past the 404 of an unknown session or candidate.
parameters = {{ "path.session_id" = "{session_id}", "path.candidate_id" = "{candidate_id}" }}

[phases.stateful]
enabled = true  # follows registerSession's links

[[operations]]
include-operation-id = "deleteSession"
parameters = {{ "path.session_id" = "{erased_session_id}" }}

[[operations]]
include-operation-id = "deleteCandidate"
parameters = {{ "path.candidate_id" = "{erased_candidate_id}" }}

# A schema-valid request these operations refuse with 422 is right, not a bug: the refusals depend on state or on
# rules across fields that JSON Schema does not carry (a streaming file has no size or SHA-256 yet; a part number
# past the declared file; presigning a streaming file's parts; completing a streaming file without its size; the
# identifiers' syntax and the content type each kind takes, checked by ingest.schemas' validators; an exam
# policy's `exit` above its `enter`).
[[operations]]
include-operation-id = ["registerSession", "addMedia", "completeMedia", "presignParts", "uploadPart", "setExamPolicy"]
checks.positive_data_acceptance.enabled = false

# `.../parts/presign` is also `.../parts/{{part_number}}` with a part number that is not one: PUT is answered there
# (422, not a 405) and so named in `Allow`. Digits-only part numbers in the route (`{{part_number:int}}`) would fail
# on a 5,000-digit number (a 500, tests/api/test_hostile_input.py) before any handler could refuse it.
[[operations]]
include-operation-id = "presignParts"
checks.unsupported_method.enabled = false
checks.allow_header_conformance.enabled = false
"""


@pytest.mark.slow
def test_schemathesis_finds_nothing_in_the_served_api(api: Api, tenant: tuple[str, str], tmp_path: Path) -> None:
    _, key = tenant
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        FUZZ_CONFIG.format(
            key=key,
            session_id=_registered(api, key, candidate_id="cand-fuzz"),
            candidate_id="cand-fuzz",
            erased_session_id=_registered(api, key, candidate_id="cand-fuzz-erased"),
            erased_candidate_id="cand-fuzz-erased",
        )
    )
    reports = tmp_path / "reports"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{api.url}/openapi.json"),
            *("--no-color", "--report", "json", "--report-dir", str(reports)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    report = json.loads(next(reports.glob("*.json")).read_text())
    print(f"schemathesis ran {report['test_cases']['generated']} test cases: {report['test_cases']}")
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert report["failures"] == [] and report["errors"] == []
    assert report["phases"]["stateful"]["status"] == "success"
    assert report["test_cases"]["generated"] >= 500, "the run must reach every operation many times"


@pytest.mark.slow
def test_a_generated_client_uploads_a_session(
    api: Api, tenant: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """openapi-python-client, offline, from the served document: register, upload the parts, complete, read."""
    package = f"proctor_client_{uuid.uuid4().hex[:8]}"
    (tmp_path / "openapi.json").write_text(httpx.get(f"{api.url}/openapi.json").text)
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "package_name_override": package,
                "post_hooks": [],  # no formatter: nothing runs but the generator
                "content_type_overrides": {"image/jpeg": "application/octet-stream"},  # the system check's frame
            }
        )
    )
    generated = subprocess.run(
        [
            *(sys.executable, "-m", "openapi_python_client", "generate", "--meta", "none", "--fail-on-warning"),
            *("--path", "openapi.json", "--config", "config.json", "--output-path", package),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        _upload_with_generated_client(package, api.url, tenant[1], mf.h264_mp4(tmp_path))
    finally:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]


def _upload_with_generated_client(package: str, url: str, key: str, video: Path) -> None:
    client_module = importlib.import_module(f"{package}.client")
    sessions = {
        name: importlib.import_module(f"{package}.api.sessions.{name}")
        for name in ("register_session", "upload_part", "complete_media", "get_session")
    }
    models = importlib.import_module(f"{package}.models")
    types = importlib.import_module(f"{package}.types")
    data = video.read_bytes()
    with client_module.AuthenticatedClient(base_url=url, token=key, raise_on_unexpected_status=True) as client:
        body = models.SessionCreate.from_dict(
            session_body({"kind": "webcam", "size_bytes": len(data), "sha256": sha(video), "content_type": "video/mp4"})
        )
        registered = sessions["register_session"].sync_detailed(client=client, body=body)
        assert registered.status_code == 201
        session = registered.parsed
        assert isinstance(session, models.SessionOut) and session.state == "uploading"
        webcam = session.media[0]
        for number in range(1, webcam.part_count + 1):
            part = data[(number - 1) * webcam.part_size : number * webcam.part_size]
            stored = sessions["upload_part"].sync_detailed(
                session.id, models.MediaKind.WEBCAM, number, client=client, body=types.File(payload=part)
            )
            assert isinstance(stored.parsed, models.PartOut), stored.content
            assert stored.parsed.size == len(part)
        # The body is optional for a declared file; the generator sends its UNSET placeholder when it is left out.
        measured = models.CompleteRequest(size_bytes=len(data), sha256=sha(video))
        completed = sessions["complete_media"].sync_detailed(
            session.id, models.MediaKind.WEBCAM, client=client, body=measured
        )
        assert isinstance(completed.parsed, models.SessionOut), completed.content
        read = sessions["get_session"].sync_detailed(session.id, client=client).parsed
        assert isinstance(read, models.SessionOut)
        assert read.state in {"validated", "queued"}
        assert read.media[0].state == models.MediaState.COMPLETE
