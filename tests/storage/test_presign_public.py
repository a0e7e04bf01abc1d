"""Presigned URLs for clients that reach S3 at another address than the services do (outside Docker, behind a
proxy): they name the public endpoint, still work there, and signing them never calls that endpoint."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from core.context import build_context
from core.settings import Settings
from proctor.local_server import BackgroundServer
from proctor.wiring import platform_app
from storage.object_store import ObjectStore, S3Location
from storage.public_endpoint import PublicEndpoint
from tests.support.platform import MIB, Api, Caller, declare, session_body


def public_of(s3: S3Location) -> str:
    """The same server under another host name that resolves to it: localhost, not 127.0.0.1."""
    host, port = s3.endpoint.rsplit(":", 1)
    assert host == "127.0.0.1"
    return f"localhost:{port}"


def test_presigned_urls_name_the_public_endpoint_and_work_there(s3: S3Location) -> None:
    store = ObjectStore(s3, public=PublicEndpoint(public_of(s3), secure=False))
    store.ensure_bucket()
    key = f"t-public/e/{uuid.uuid4().hex}/media/webcam"
    upload_id = store.create_multipart(key)
    url = store.presigned_upload_part(key, upload_id, 1, ttl_s=60)
    assert urlparse(url).netloc == public_of(s3)
    assert httpx.put(url, content=b"a part sent from outside").status_code == 200
    (part,) = store.list_parts(key, upload_id)
    store.complete_multipart(key, upload_id, [part])

    playback = store.presigned_get(key, ttl_s=60)
    assert urlparse(playback).netloc == public_of(s3)
    assert httpx.get(playback).content == b"a part sent from outside"


def test_signing_for_the_public_endpoint_makes_no_request_to_it(s3: S3Location) -> None:
    """The services may not reach the public address at all (it may be the host's, seen from inside Docker)."""
    store = ObjectStore(s3, public=PublicEndpoint("uploads.example.invalid:8443", secure=True))
    url = store.presigned_get("t-public/e/s/media/webcam", ttl_s=60)
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc) == ("https", "uploads.example.invalid:8443")
    assert "X-Amz-Signature=" in parsed.query


@pytest.mark.parametrize("endpoint", ["http://files.example.org:9000", "files.example.org:9000/s3", ""])
def test_a_public_endpoint_is_host_and_port_only(endpoint: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        PublicEndpoint(endpoint, secure=False)


def test_the_api_hands_out_part_urls_on_the_public_endpoint(
    api: Api, s3: S3Location, settings: Settings, multipart_video: Path
) -> None:
    _, key = api.tenant()
    public = settings.model_copy(update={"s3_public_endpoint": public_of(s3)})
    context = build_context(public, s3)
    try:
        with BackgroundServer(platform_app(context)) as url:
            caller = Caller(httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60))
            session = caller.register(session_body(declare("webcam", multipart_video))).json()
            base = f"/v1/sessions/{session['id']}/media/webcam/parts"
            (part,) = caller.http.post(f"{base}/presign", json={"part_numbers": [1]}).json()["parts"]
            assert urlparse(part["url"]).netloc == public_of(s3)
            assert httpx.put(part["url"], content=multipart_video.read_bytes()[: 5 * MIB]).status_code == 200
            received = caller.http.get(base).json()["received"]
            assert [p["part_number"] for p in received] == [1]
    finally:
        context.close()
