"""What every HTTP API test starts from: a fresh tenant and a client that holds its token."""

from __future__ import annotations

import httpx
import pytest

from tests.support.platform import Api, Caller


@pytest.fixture
def tenant(api: Api) -> tuple[str, str]:
    """(slug, API token) of a tenant no other test sees."""
    return api.tenant()


@pytest.fixture
def caller(api: Api, tenant: tuple[str, str]) -> Caller:
    return Caller(httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {tenant[1]}"}, timeout=120))
