"""Refused requests reach the audit trail: the review UI's 403, 404 and CSRF refusals, the API's 401 and 403,
with the user or the API key's prefix and the client's address, never a secret, and in bounded volume (one
entry per address and problem code a window, then one with the count)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from core.context import AppContext
from core.db import utcnow
from core.tables import AuditEvent
from core.tenants import add_tenant, issue_api_key, key_prefix, revoke_api_key
from core.vocabulary import Role
from proctor.local_server import BackgroundServer
from proctor.wiring import server_app
from review_ui.accounts import add_user, assign
from review_ui.http import SESSION_COOKIE
from review_ui.refusal_audit import Refusal, RefusalAudit, RefusalWindows
from tests.review_ui.conftest import PASSWORD, Browser

WINDOW_S = 60.0


class Clock:
    """The recorder's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    url: str
    context: AppContext
    clock: Clock
    reviewer: str  # username, tenant "a"
    key: str  # tenant "a"'s API key

    def browser(self, ip: str) -> Browser:
        """The reviewer, signed in, every request coming through the proxy from `ip`."""
        client = Browser(self.url)
        client.headers["X-Forwarded-For"] = ip
        client.login(self.reviewer, PASSWORD)
        return client


@contextmanager
def serving(context: AppContext) -> Iterator[Served]:
    """The whole server, as `proctor serve` builds it, its refusals counted on a clock the test moves; the
    local host is the trusted proxy (`BackgroundServer`), so each test's requests come from addresses of its own."""
    suffix = uuid.uuid4().hex[:8]
    with context.db() as db:
        tenant = add_tenant(db, f"refusals-{suffix}", "a platform")
        key = issue_api_key(db, tenant)
        user = add_user(db, f"reviewer-{suffix}", PASSWORD, Role.REVIEWER)
        assign(db, user, tenant.slug)
        db.commit()
    app = server_app(context)
    clock = Clock()
    app.state.refusal_audit = RefusalAudit(context.db, RefusalWindows(window_s=WINDOW_S, clock=clock))
    with BackgroundServer(app) as url:
        yield Served(url, context, clock, f"reviewer-{suffix}", key)


@pytest.fixture
def served(context: AppContext) -> Iterator[Served]:
    with serving(context) as running:
        yield running


def new_ip() -> str:
    """An address of the benchmarking range (198.18.0.0/15) that no other test uses."""
    n = uuid.uuid4().int
    return f"198.{18 + n % 2}.{n // 2 % 256}.{n // 512 % 256}"


def entries(context: AppContext, ip: str | None = None, actor: str | None = None) -> list[AuditEvent]:
    with context.db() as db:
        query = select(AuditEvent).where(AuditEvent.action.in_(["refused", "refused_repeated"]))
        if ip is not None:
            query = query.where(AuditEvent.ip == ip)
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        return list(db.scalars(query.order_by(AuditEvent.seq)))


def summary(event: AuditEvent) -> tuple[str, str, str, int, str]:
    d = event.detail
    return event.actor, d["method"], d["path"], d["status"], d["code"]


def test_a_signed_in_users_refusals_name_the_user_and_the_real_client(served: Served) -> None:
    ip = new_ip()
    reviewer = served.browser(ip)
    assert reviewer.get("/review/sessions/not-hers").status_code == 404  # unknown and not hers answer alike
    assert reviewer.get("/review/audit").status_code == 403  # officers and admins only
    reviewer.page("/review/queue")
    forged = reviewer.post("/review/sessions/not-hers/claim", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    user = f"user:{served.reviewer}"
    assert [summary(e) for e in entries(served.context, ip)] == [
        (user, "GET", "/review/sessions/not-hers", 404, "not_found"),
        (user, "GET", "/review/audit", 403, "forbidden"),
        (user, "POST", "/review/sessions/not-hers/claim", 403, "csrf_rejected"),
    ]
    assert all(e.tenant_id is None and e.session_id is None for e in entries(served.context, ip))


def test_refusals_to_no_one_signed_in_are_audited_without_a_user(served: Served) -> None:
    ip = new_ip()
    visitor = Browser(served.url)
    visitor.page("/review/login")
    refused = visitor.post(
        "/review/login",
        data={"username": served.reviewer, "password": PASSWORD, "csrf_token": "not the form's"},
        headers={"X-Forwarded-For": ip},
    )
    assert refused.status_code == 403
    api = httpx.get(f"{served.url}/v1/sessions/any/review", headers={"X-Forwarded-For": ip})
    assert api.status_code == 401
    (login, unauthorized) = entries(served.context, ip)
    assert summary(login) == ("anonymous", "POST", "/review/login", 403, "csrf_rejected")
    assert summary(unauthorized) == ("anonymous", "GET", "/v1/sessions/any/review", 401, "unauthorized")
    assert "credential" not in unauthorized.detail  # none was sent


def test_api_refusals_name_the_key_by_its_prefix_and_keep_no_secret(served: Served) -> None:
    context = served.context
    _, revoked = issue_and_revoke(context)
    unknown = "pp_0123456789ab_" + uuid.uuid4().hex  # well formed, but no such key
    token = "put_" + uuid.uuid4().hex
    calls = {  # each from its own address: one address's repeats of a code are counted, not each written
        "revoked key": ("GET", "/v1/sessions/s1/review", revoked, 401, "api_key_revoked"),
        "unknown key": ("GET", "/v1/sessions/s1/review", unknown, 401, "unauthorized"),
        "token where a key is needed": ("GET", "/v1/sessions/s1/review", token, 403, "upload_token_scope"),
        "unknown token": ("GET", "/v1/sessions/s1", token, 401, "upload_token_invalid"),
    }
    recorded = {}
    for name, (method, path, bearer, status, code) in calls.items():
        ip = new_ip()
        answer = httpx.request(
            method, served.url + path, headers={"Authorization": f"Bearer {bearer}", "X-Forwarded-For": ip}
        )
        assert (answer.status_code, answer.json()["code"]) == (status, code), name
        (recorded[name],) = entries(context, ip)
        assert summary(recorded[name]) == ("anonymous", method, path, status, code), name
    assert recorded["revoked key"].detail["key_prefix"] == "pp_" + key_prefix(revoked)
    assert recorded["unknown key"].detail["key_prefix"] == "pp_0123456789ab"
    assert recorded["token where a key is needed"].detail["credential"] == "upload_token"
    assert "key_prefix" not in recorded["unknown token"].detail
    secrets = [revoked.rsplit("_", 1)[1], unknown.rsplit("_", 1)[1], token, token.removeprefix("put_")]
    written = json.dumps([[e.actor, e.ip, e.detail] for e in recorded.values()])
    assert not [s for s in secrets if s in written]


def issue_and_revoke(context: AppContext) -> tuple[str, str]:
    with context.db() as db:
        tenant = add_tenant(db, f"revoked-{uuid.uuid4().hex[:8]}", "a platform")
        key = issue_api_key(db, tenant)
        revoke_api_key(db, key_prefix(key), utcnow())
        db.commit()
        return tenant.id, key


def test_no_password_cookie_or_token_reaches_the_trail(served: Served) -> None:
    ip = new_ip()
    reviewer = served.browser(ip)
    cookie = reviewer.cookies[SESSION_COOKIE]
    reviewer.page("/review/queue")
    csrf = reviewer.csrf
    reviewer.post(f"/review/sessions/x/claim?token={csrf}", data={"csrf_token": csrf[::-1]})  # refused: CSRF
    reviewer.get("/review/audit?key=" + served.key)  # refused: role
    stored = entries(served.context, ip)
    assert len(stored) == 2 and stored[0].detail["path"] == "/review/sessions/x/claim"  # no query string
    written = json.dumps([[e.actor, e.ip, e.detail] for e in stored])
    assert not [s for s in (PASSWORD, cookie, csrf, csrf[::-1], served.key) if s in written]


def test_a_flood_of_refusals_writes_one_entry_a_window_and_then_the_count(context: AppContext) -> None:
    ip = new_ip()
    with serving(context) as served:
        reviewer = served.browser(ip)
        for n in range(30):
            assert reviewer.get(f"/review/sessions/guess-{n}").status_code == 404
        (first,) = entries(context, ip)
        assert summary(first)[2:] == ("/review/sessions/guess-0", 404, "not_found")
        served.clock.now += WINDOW_S  # the window closes: the next refusal writes the count, and starts anew
        assert reviewer.get("/review/sessions/guess-30").status_code == 404
        _, repeated, again = entries(context, ip)
        assert (repeated.action, repeated.actor) == ("refused_repeated", "system:refusal_audit")
        assert repeated.detail["repeats"] == 29 and repeated.detail["last_path"] == "/review/sessions/guess-29"
        assert repeated.detail["actors"] == [f"user:{served.reviewer}"] and repeated.detail["code"] == "not_found"
        assert summary(again)[2] == "/review/sessions/guess-30"
        for n in range(5):
            reviewer.get(f"/review/sessions/more-{n}")
        assert len(entries(context, ip)) == 3
    *_, on_stop = entries(context, ip)  # what was still counted is written when the server stops
    assert (on_stop.action, on_stop.detail["repeats"]) == ("refused_repeated", 5)


# -- the bound itself, on a clock of its own ----------------------------------------------------------------
AT = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)


def refusal(ip: str, code: str = "not_found", path: str = "/review/sessions/x") -> Refusal:
    return Refusal("GET", path, 404, code, ip, user="ada")


def test_each_address_and_code_has_its_own_window() -> None:
    clock = Clock()
    windows = RefusalWindows(window_s=60, clock=clock)
    assert [line.action for line in windows.admit(refusal("192.0.2.1"), AT)] == ["refused"]
    assert [line.action for line in windows.admit(refusal("192.0.2.1", code="forbidden"), AT)] == ["refused"]
    assert [line.action for line in windows.admit(refusal("192.0.2.2"), AT)] == ["refused"]
    assert windows.admit(refusal("192.0.2.1"), AT) == []
    clock.now += 59.9
    assert windows.admit(refusal("192.0.2.1"), AT) == []
    clock.now += 0.1  # every window closes; only the one with repeats says so
    (repeated, first) = windows.admit(refusal("192.0.2.3"), AT)
    assert (repeated.action, repeated.ip, repeated.detail["repeats"]) == ("refused_repeated", "192.0.2.1", 2)
    assert (first.action, first.ip) == ("refused", "192.0.2.3")
    assert windows.drain(AT) == []  # 192.0.2.3's window has no repeats


def test_past_the_tracked_addresses_further_ones_share_one_window_per_code() -> None:
    windows = RefusalWindows(window_s=60, max_tracked=2, clock=Clock())
    written = [line for n in range(50) for line in windows.admit(refusal(f"203.0.113.{n}"), AT)]
    assert [(line.action, line.ip) for line in written] == [
        ("refused", "203.0.113.0"),
        ("refused", "203.0.113.1"),
        ("refused", "203.0.113.2"),  # the first of the shared window, with its own address
    ]
    assert "beyond" in written[2].detail["repeats_counted_for"]
    (shared,) = windows.drain(AT)
    assert (shared.ip, shared.detail["repeats"], shared.detail["actors"]) == (None, 47, ["user:ada"])
