"""Behind a reverse proxy the client is whoever the proxy says (X-Forwarded-For, X-Forwarded-Proto), but only when
the connection comes from one of PROCTOR_TRUSTED_PROXIES: the audit trail and the sign-in limits then see the real
client, and a client that sends the headers itself is not believed. Over the whole app, served as `proctor serve`
serves it (`proxy_options`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from core.context import AppContext
from core.settings import Settings
from core.tables import AuditEvent
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from tests.review_ui.conftest import Browser

ATTEMPTS_PER_ADDRESS = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Few sign-in attempts per address, so that the limit shows which address it counted."""
    return settings.model_copy(update={"login_attempts_per_address": ATTEMPTS_PER_ADDRESS})


@contextmanager
def served_behind(context: AppContext, trusted_proxies: str) -> Iterator[str]:
    """The app, trusting the proxies that PROCTOR_TRUSTED_PROXIES=`trusted_proxies` names; the test connects
    from 127.0.0.1, as a proxy on the same host would."""
    proxies = Settings(trusted_proxies=trusted_proxies, _env_file=None).trusted_proxies  # type: ignore[call-arg,arg-type]
    with BackgroundServer(server_app(context), trusted_proxies=proxies) as url:
        yield url


def failed_sign_in(url: str, username: str, forwarded_for: str) -> int:
    visitor = Browser(url)
    visitor.page("/review/login")
    answer = visitor.post(
        "/review/login",
        data={"username": username, "password": "not the password", "csrf_token": visitor.csrf},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return answer.status_code


def failed_from(context: AppContext, username: str) -> list[str | None]:
    with context.db() as db:
        query = select(AuditEvent.ip).where(AuditEvent.action == "login_failed", AuditEvent.actor == f"user:{username}")
        return list(db.scalars(query.order_by(AuditEvent.seq)))


def refused_from(context: AppContext, path: str) -> list[str | None]:
    with context.db() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.seq))
        return [event.ip for event in rows if event.detail.get("path") == path]


def test_a_trusted_proxys_client_address_is_audited_and_limited(context: AppContext) -> None:
    username = f"nobody-{uuid.uuid4().hex[:8]}"
    with served_behind(context, "192.0.2.10, 127.0.0.0/8") as url:
        # A chain: the client, then a proxy we trust; the first address from the right we do not trust is the client.
        assert failed_sign_in(url, username, "203.0.113.7, 192.0.2.10") == 401
        path = f"/v1/sessions/{uuid.uuid4().hex}/review"
        assert httpx.get(url + path, headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 401
        https = httpx.get(url + "/review/login", headers={"X-Forwarded-Proto": "https"})
        assert "Strict-Transport-Security" in https.headers  # the scheme the proxy was reached by
        # The limit counts each real client apart: one address is throttled, another is not.
        for _ in range(ATTEMPTS_PER_ADDRESS - 1):
            assert failed_sign_in(url, username, "203.0.113.7") == 401
        assert failed_sign_in(url, username, "203.0.113.7") == 429
        assert failed_sign_in(url, username, "203.0.113.9") == 401
    assert failed_from(context, username) == ["203.0.113.7"] * ATTEMPTS_PER_ADDRESS + ["203.0.113.9"]
    assert refused_from(context, path) == ["203.0.113.8"]


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8"], ids=["no proxy trusted", "another proxy trusted"])
def test_the_headers_of_an_untrusted_connection_are_ignored(context: AppContext, trusted: str) -> None:
    username = f"nobody-{uuid.uuid4().hex[:8]}"
    with served_behind(context, trusted) as url:
        path = f"/v1/sessions/{uuid.uuid4().hex}/review"
        assert httpx.get(url + path, headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 401
        https = httpx.get(url + "/review/login", headers={"X-Forwarded-Proto": "https"})
        assert "Strict-Transport-Security" not in https.headers
        # Every forged address is the same client to the limit: the one that connected.
        forged = [failed_sign_in(url, username, f"203.0.113.{n}") for n in range(ATTEMPTS_PER_ADDRESS + 1)]
        assert forged == [401] * ATTEMPTS_PER_ADDRESS + [429]
    assert failed_from(context, username) == ["127.0.0.1"] * ATTEMPTS_PER_ADDRESS
    assert refused_from(context, path) == ["127.0.0.1"]


def test_trusted_proxies_are_addresses_or_networks() -> None:
    parsed = Settings(trusted_proxies="10.0.0.5, 10.42.0.0/16,::1", _env_file=None)  # type: ignore[call-arg,arg-type]
    assert parsed.trusted_proxies == ["10.0.0.5", "10.42.0.0/16", "::1"]
    assert Settings(_env_file=None).trusted_proxies == []  # type: ignore[call-arg]
    for wrong in ("*", "ingress.internal", "10.0.0.0/33"):
        with pytest.raises(ValidationError, match="PROCTOR_TRUSTED_PROXIES"):
            Settings(trusted_proxies=wrong, _env_file=None)  # type: ignore[call-arg,arg-type]
