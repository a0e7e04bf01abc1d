"""Webhook delivery against real receivers: Standard Webhooks signatures, per-delivery timestamps, tarpits that
hold up only their own tenant, capped answers, destination checks on every delivery, and secrets sealed at rest."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.db import make_engine, make_sessionmaker, migrate, utcnow
from core.secrets_box import SecretBox, SecretBoxError, secret_box
from core.tables import Exam, ExamSession, Tenant, WebhookDelivery
from proctor.cli import app as proctor_app
from proctor.local_server import BackgroundServer
from review_ui.webhook_destinations import DestinationRefused, DestinationRules, resolve_destination, system_resolve
from review_ui.webhooks import (
    DeliveryPolicy,
    WebhookSender,
    enqueue,
    new_secret,
    seal_secret,
    secret_purpose,
    sign,
    verify,
)

Received = list[tuple[dict[str, str], bytes, float]]


@pytest.fixture
def db(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate(database_url)
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    with factory() as s:  # the PostgreSQL database is shared by the run: start with no deliveries owed
        s.execute(delete(WebhookDelivery))
        s.commit()
    yield factory
    engine.dispose()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(32))


def policy(box: SecretBox, **overrides: object) -> DeliveryPolicy:
    """Short deadlines, and the tests' receivers on 127.0.0.1 admitted."""
    base = DeliveryPolicy(
        secrets=box, max_attempts=3, backoff_s=30, timeout_s=3, connect_timeout_s=1, read_timeout_s=2,
        destinations=DestinationRules(allow_private=True),
    )  # fmt: skip
    return replace(base, **overrides)  # type: ignore[arg-type]


def tenant_owed(db: sessionmaker[Session], box: SecretBox, url: str, deliveries: int = 1) -> tuple[str, str]:
    """A tenant with a webhook at `url` (its secret sealed, as the CLI stores it), owed `deliveries` review.final
    deliveries; returns (tenant id, secret)."""
    secret = new_secret()
    with db() as s:
        tenant = Tenant(slug=f"t-{uuid.uuid4().hex[:8]}", name="t")
        s.add(tenant)
        s.flush()
        tenant.webhook_url, tenant.webhook_secret = url, seal_secret(box, tenant.id, secret)
        exam = Exam(tenant_id=tenant.id, external_id="e")
        s.add(exam)
        s.flush()
        for n in range(deliveries):
            session = ExamSession(
                tenant_id=tenant.id, exam_id=exam.id, candidate_id=f"c{n}", attempt_id=uuid.uuid4().hex,
                started_at=datetime.now(UTC),
            )  # fmt: skip
            s.add(session)
            s.flush()
            enqueue(s, tenant, session.id, "review.final", f'{{"event": "review.final", "n": {n}}}', utcnow())
        s.commit()
        return tenant.id, secret


def deliveries(db: sessionmaker[Session], tenant_id: str) -> list[WebhookDelivery]:
    with db() as s:
        return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)))


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    """A real endpoint recording (headers, body, unix time of receipt); ?delay=s answers that much later."""
    received: Received = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        received.append((dict(request.headers), await request.body(), time.time()))
        time.sleep(float(request.query_params.get("delay", "0")))  # blocks this server: one request at a time
        return {"ok": True}

    with BackgroundServer(app) as url:
        yield f"{url}/hook", received


class RawServer:
    """A TCP server that misbehaves: `silent` accepts and never answers, `trickle` sends a byte every 0.2 s
    forever, `flood` answers 200 and then an endless body. Counts the connections open at once."""

    def __init__(self, mode: str) -> None:
        self.mode, self.open, self.most_open = mode, 0, 0
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.lock = threading.Lock()

    def __enter__(self) -> RawServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        try:
            conn.recv(65536)
            if self.mode == "flood":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            conn.settimeout(0.2)
            while not self.stop.is_set():
                if self.mode == "flood":
                    conn.sendall(b"x" * 65536)
                    continue
                if self.mode == "trickle":
                    conn.sendall(b"H")
                try:
                    if not conn.recv(1):  # the client hung up
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.open -= 1


def independent_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks check written from the spec, sharing no code with review_ui.webhooks."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(signature, expected)
        for version, _, signature in (entry.partition(",") for entry in headers["webhook-signature"].split())
    )


def test_signing_matches_the_standard_webhooks_reference_vector() -> None:
    # From the Standard Webhooks reference library's own tests (libraries/python/tests/test_webhooks.py).
    body = b'{"test": 2432232314}'
    signature = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_delivery_is_signed_per_standard_webhooks_and_verifies_independently(
    db: sessionmaker[Session], box: SecretBox, receiver: tuple[str, Received]
) -> None:
    url, received = receiver
    tenant_id, secret = tenant_owed(db, box, url)
    assert WebhookSender(db, policy(box)).send_due() == 1
    headers, body, at = received[0]
    [delivery] = deliveries(db, tenant_id)
    assert delivery.state == "delivered"
    assert headers["webhook-id"] == delivery.id and headers["content-type"] == "application/json"
    assert abs(int(headers["webhook-timestamp"]) - at) <= 1
    assert independent_verify(secret, headers, body)
    assert not independent_verify(new_secret(), headers, body)
    assert verify(secret, headers, body, utcnow())
    assert not verify(secret, headers, body + b" ", utcnow())
    assert not verify(secret, headers, body, utcnow() + timedelta(minutes=6))  # a replay, six minutes on


def test_each_delivery_is_stamped_when_it_is_sent_not_when_its_batch_was_claimed(
    db: sessionmaker[Session], box: SecretBox, receiver: tuple[str, Received]
) -> None:
    url, received = receiver
    _, secret = tenant_owed(db, box, f"{url}?delay=1", deliveries=3)
    # A pass that runs late (its clock an hour on) still stamps the POST with the time it is sent.
    assert WebhookSender(db, policy(box, per_tenant=1)).send_due(utcnow() + timedelta(hours=1)) == 1
    # One at a time for this tenant, each answered a second later: the last goes out 2 s after the first.
    sender = WebhookSender(db, policy(box, per_tenant=1))
    running = threading.Thread(target=sender.run, kwargs={"poll_s": 0.1}, daemon=True)
    running.start()
    deadline = time.monotonic() + 20
    while len(received) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sender.stop.set()
    running.join(timeout=10)
    assert len(received) == 3 and received[2][2] - received[0][2] >= 1.5
    # The stamp is whole seconds taken just before the POST: up to 1 s behind its arrival, plus scheduling slack
    # on a loaded machine; a stamp taken when the batch was claimed would be 2 s behind the third.
    for headers, body, at in received:
        assert 0 <= at - int(headers["webhook-timestamp"]) < 1.5, "each delivery carries its own time"
        assert verify(secret, headers, body, datetime.fromtimestamp(at, UTC), tolerance_s=2)


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("silent", "ReadTimeout: the receiver sent or took nothing for 2 s"),
        ("trickle", "no complete answer within 3 s"),
    ],
)
def test_a_tarpit_receiver_holds_up_only_its_own_tenant(
    db: sessionmaker[Session], box: SecretBox, receiver: tuple[str, Received], mode: str, error: str
) -> None:
    url, received = receiver
    with RawServer(mode) as tarpit:
        slow_tenant, _ = tenant_owed(db, box, tarpit.url, deliveries=4)
        sender = WebhookSender(db, policy(box, timeout_s=3, per_tenant=2))
        running = threading.Thread(target=sender.run, kwargs={"poll_s": 0.1}, daemon=True)
        running.start()
        time.sleep(0.5)  # the tarpit now holds the slow tenant's deliveries
        started = time.monotonic()
        quick_tenant, _ = tenant_owed(db, box, url)  # owed after the tarpit took its slots
        while not received and time.monotonic() - started < 10:
            time.sleep(0.05)
        waited = time.monotonic() - started
        time.sleep(3.5)  # past the deadline of the tarpit's first two attempts
        sender.stop.set()
        running.join(timeout=10)
        most_open = tarpit.most_open
    assert received and waited < 2, f"another tenant's delivery waited {waited:.1f} s behind a {mode} receiver"
    assert [d.state for d in deliveries(db, quick_tenant)] == ["delivered"]
    assert most_open <= 2, "at most per_tenant deliveries of one tenant in flight"
    timed_out = [d for d in deliveries(db, slow_tenant) if d.last_error]
    assert timed_out and all(error in (d.last_error or "") for d in timed_out), [d.last_error for d in timed_out]
    assert all(d.state == "pending" and d.attempts == 1 for d in timed_out)  # to be retried after backoff


def test_an_endless_answer_is_read_only_up_to_the_cap(db: sessionmaker[Session], box: SecretBox) -> None:
    with RawServer("flood") as flood:
        tenant_id, _ = tenant_owed(db, box, flood.url)
        started = time.monotonic()
        assert WebhookSender(db, policy(box, timeout_s=10, max_response_bytes=4096)).send_due() == 1
        elapsed = time.monotonic() - started
    assert elapsed < 3
    [delivery] = deliveries(db, tenant_id)
    assert delivery.state == "delivered" and delivery.last_status == 200


S3_ENDPOINT = "127.0.0.1:9333"
# (url, allow_private, what the refusal says; None: delivered to)
DESTINATIONS = [
    ("https://127.0.0.1/hook", False, "loopback"),
    ("https://[::1]/hook", False, "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", False, "loopback"),
    ("https://localhost/hook", False, "loopback"),
    ("https://2130706433/hook", False, "loopback"),  # 127.0.0.1 written as one number
    ("https://10.1.2.3/hook", False, "private-network"),
    ("https://172.16.0.1/hook", False, "private-network"),
    ("https://172.31.255.254/hook", False, "private-network"),
    ("https://192.168.1.10/hook", False, "private-network"),
    ("https://[fd12:3456::1]/hook", False, "private-network"),
    ("https://[64:ff9b::a01:203]/hook", False, "private-network"),  # NAT64 of 10.1.2.3
    ("https://169.254.10.1/hook", False, "link-local"),
    ("https://100.64.0.1/hook", False, "non-public"),
    ("https://169.254.169.254/latest/meta-data/", False, "cloud metadata service"),
    ("https://169.254.169.254/latest/meta-data/", True, "cloud metadata service"),
    ("https://[fd00:ec2::254]/latest/meta-data/", True, "cloud metadata service"),
    ("https://0.0.0.0/hook", True, "unspecified"),
    ("https://224.0.0.1/hook", True, "multicast"),
    (f"http://{S3_ENDPOINT}/proctor", True, "S3 server"),
    ("http://localhost:9333/proctor", True, "S3 server"),
    ("http://93.184.215.14/hook", False, "plain http"),
    ("http://93.184.215.14/hook", True, "plain http"),  # allow_private admits http on private networks only
    ("ftp://93.184.215.14/hook", False, "https://"),
    ("http://127.0.0.1:8080/hook", True, None),
    ("https://10.1.2.3/hook", True, None),
    ("https://93.184.215.14/hook", False, None),
]


@pytest.mark.parametrize(("url", "allow_private", "refusal"), DESTINATIONS)
def test_destinations_are_checked_against_the_addresses_they_resolve_to(
    url: str, allow_private: bool, refusal: str | None
) -> None:
    rules = DestinationRules(allow_private=allow_private, refused_endpoints=(S3_ENDPOINT,))
    check = resolve_destination(url, rules, system_resolve)
    if refusal is None:
        assert asyncio.run(check).addresses
    else:
        with pytest.raises(DestinationRefused, match=refusal):
            asyncio.run(check)


def test_a_refused_destination_fails_at_delivery_time_and_nothing_is_sent(
    db: sessionmaker[Session], box: SecretBox, receiver: tuple[str, Received]
) -> None:
    url, received = receiver  # set when private receivers were allowed; refused now that they are not
    tenant_id, _ = tenant_owed(db, box, url)
    assert WebhookSender(db, policy(box, destinations=DestinationRules())).send_due() == 1
    [delivery] = deliveries(db, tenant_id)
    assert not received
    assert delivery.state == "failed" and delivery.attempts == 1 and "loopback" in (delivery.last_error or "")


def test_a_name_that_resolves_to_loopback_is_refused_and_an_admitted_one_is_reached_at_the_checked_address(
    db: sessionmaker[Session], box: SecretBox, receiver: tuple[str, Received]
) -> None:
    url, received = receiver
    port = url.split(":")[2].split("/")[0]

    async def resolve(host: str, _port: int) -> list[str]:
        return ["127.0.0.1"] if host == "receiver.example" else await system_resolve(host, _port)

    refused, _ = tenant_owed(db, box, f"https://receiver.example:{port}/hook")
    assert WebhookSender(db, policy(box, destinations=DestinationRules()), resolve=resolve).send_due() == 1
    assert "receiver.example resolves to 127.0.0.1, a loopback address" in (deliveries(db, refused)[0].last_error or "")
    admitted, _ = tenant_owed(db, box, f"http://receiver.example:{port}/hook")
    assert WebhookSender(db, policy(box), resolve=resolve).send_due() == 1
    assert [d.state for d in deliveries(db, admitted)] == ["delivered"]
    assert received[0][0]["host"] == f"receiver.example:{port}"  # connected to the checked address, Host kept


def test_webhook_secrets_are_sealed_at_rest(db: sessionmaker[Session], box: SecretBox, tmp_path: Path) -> None:
    tenant_id, secret = tenant_owed(db, box, "https://93.184.215.14/hook")
    with db() as s:
        stored = s.get(Tenant, tenant_id).webhook_secret  # type: ignore[union-attr]
        other = Tenant(slug=f"t-{uuid.uuid4().hex[:8]}", name="other")
        s.add(other)
        s.flush()
        other_id = other.id
    assert stored is not None and stored.startswith("sb1:") and len(stored) <= 128
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    assert box.open(stored, secret_purpose(tenant_id)) == secret
    with pytest.raises(SecretBoxError, match="copied from another row"):
        box.open(stored, secret_purpose(other_id))
    with pytest.raises(SecretBoxError, match=f"sealed under key {box.key_id}"):
        SecretBox(os.urandom(32)).open(stored, secret_purpose(tenant_id))
    with pytest.raises(SecretBoxError, match="stored in clear"):
        box.open(secret, secret_purpose(tenant_id))
    production = secret_box(None, production=True, data_dir=tmp_path)
    with pytest.raises(SecretBoxError, match="PROCTOR_SECRETS_KEY is unset"):
        production.seal(secret, secret_purpose(tenant_id))
    development = secret_box(None, production=False, data_dir=tmp_path)
    assert secret_box(None, production=False, data_dir=tmp_path).key_id == development.key_id  # kept, reused
    assert stat.S_IMODE((tmp_path / "secrets.key").stat().st_mode) == 0o600
    key = base64.b64encode(box.key or b"").decode()
    for shown in (repr(box), repr(policy(box)), repr(development)):
        assert key not in shown and "key=" not in shown.replace("key_id=", "")


def test_a_delivery_logs_no_secret_and_a_clear_secret_is_not_used(
    db: sessionmaker[Session], box: SecretBox, receiver: tuple[str, Received], caplog: pytest.LogCaptureFixture
) -> None:
    url, received = receiver
    tenant_id, secret = tenant_owed(db, box, url)
    with db() as s:
        legacy = s.get(Tenant, tenant_id)
        assert legacy is not None
        legacy.webhook_secret = secret  # as stored before secrets were sealed
        s.commit()
    with caplog.at_level(logging.INFO):
        assert WebhookSender(db, policy(box)).send_due() == 1
    [delivery] = deliveries(db, tenant_id)
    assert not received and delivery.state == "pending" and "stored in clear" in (delivery.last_error or "")
    assert "proctor tenants webhook" in (delivery.last_error or "")
    assert caplog.records and secret not in caplog.text and secret.removeprefix("whsec_") not in caplog.text


def test_the_cli_checks_the_url_seals_the_secret_and_prints_it_once(
    db: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    with db() as s:
        tenant = Tenant(slug=f"t-{uuid.uuid4().hex[:8]}", name="t")
        s.add(tenant)
        s.commit()
        slug, tenant_id = tenant.slug, tenant.id
    env: dict[str, str | None] = {
        "PROCTOR_DATABASE_URL": database_url, "PROCTOR_DATA_DIR": str(tmp_path), "PROCTOR_SECRETS_KEY": None,
        "PROCTOR_ENVIRONMENT": None, "PROCTOR_S3_ENDPOINT": None,
    }  # fmt: skip
    runner = CliRunner()
    refused = runner.invoke(proctor_app, ["tenants", "webhook", slug, "http://127.0.0.1:9000/hook"], env=env)
    assert refused.exit_code == 2 and "loopback" in refused.output
    done = runner.invoke(proctor_app, ["tenants", "webhook", slug, "https://93.184.215.14/hook"], env=env)
    assert done.exit_code == 0, done.output
    printed = done.output.strip().splitlines()[-1]
    assert printed.startswith("whsec_") and len(base64.b64decode(printed.removeprefix("whsec_"))) == 32
    with db() as s:
        stored = s.get(Tenant, tenant_id)
        assert stored is not None and stored.webhook_url == "https://93.184.215.14/hook"
        sealed = stored.webhook_secret or ""
    assert printed not in sealed
    assert secret_box(None, production=False, data_dir=tmp_path).open(sealed, secret_purpose(tenant_id)) == printed
