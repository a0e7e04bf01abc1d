"""A live server with the platform API and the Open edX backend, a tenant, and edX clients of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from core.context import AppContext
from core.secrets_box import SecretBox
from core.tables import Tenant
from core.tenants import add_tenant
from ingest.uploads import Uploads
from openedx.clients import IssuedClient, add_client
from openedx.routes import mount_openedx
from proctor.local_server import BackgroundServer
from proctor.wiring import platform_app, secrets

LMS_URL = "https://lms.example.org"


@dataclass
class EdxServer:
    """The app over real HTTP, its context, and the secrets box its clients' secrets are sealed in."""

    url: str
    context: AppContext
    uploads: Uploads
    box: SecretBox

    def tenant(self) -> Tenant:
        with self.context.db() as db:
            tenant = add_tenant(db, f"t-{uuid.uuid4().hex[:10]}", "an Open edX platform")
            db.commit()
            db.refresh(tenant)
            db.expunge(tenant)
            return tenant

    def client(self, tenant: Tenant, lms_url: str = LMS_URL) -> IssuedClient:
        with self.context.db() as db:
            issued = add_client(db, self.box, db.get(Tenant, tenant.id), lms_url)  # type: ignore[arg-type]
            db.commit()
            return issued

    def token(self, issued: IssuedClient) -> str:
        return edx_token(self.url, issued)

    def http(self, issued: IssuedClient) -> httpx.Client:
        return edx_http(self.url, issued)


def edx_token(url: str, issued: IssuedClient) -> str:
    """What edx-rest-api-client's OAuthAPIClient asks for: client credentials for a JWT."""
    response = httpx.post(
        f"{url}/openedx/oauth2/access_token",
        data={
            "grant_type": "client_credentials",
            "client_id": issued.client_id,
            "client_secret": issued.client_secret,
            "token_type": "jwt",
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def edx_http(url: str, issued: IssuedClient) -> httpx.Client:
    """A client that calls the backend as edX does: `Authorization: JWT <token>` under `/openedx`."""
    return httpx.Client(
        base_url=f"{url}/openedx", headers={"Authorization": f"JWT {edx_token(url, issued)}"}, timeout=60
    )


@pytest.fixture
def edx(context: AppContext, uploads: Uploads) -> Iterator[EdxServer]:
    box = secrets(context.settings)  # as `proctor serve` seals them, so its review UI opens them too
    app = platform_app(context, uploads)
    mount_openedx(app, context.db, uploads, box, context.store)
    with BackgroundServer(app) as url:
        yield EdxServer(url, context, uploads, box)
