"""Signed webhooks to the platform when a review becomes final, with retries and delivery state kept.

Signing follows Standard Webhooks (https://www.standardwebhooks.com), which receivers have libraries for:
headers `webhook-id` (the delivery's id, the same on every retry: the receiver's idempotency key),
`webhook-timestamp` (Unix seconds, taken right before each POST) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`), under a secret `whsec_<base64 of 32 bytes>`. The
timestamp is inside the MAC, so a receiver that refuses stale ones (`verify`: five minutes) cannot be
replayed. Secrets are kept sealed (`core.secrets_box`) and opened only to sign.

A delivery is enqueued in the same transaction as the decision that caused it, then sent by
`WebhookSender`, which any number of API processes may run. A sender claims due deliveries with a
conditional UPDATE that takes a lease and commits, POSTs with no transaction open, then records the result
in a new transaction (only if its lease was not taken over). Deliveries run concurrently, at most
`per_tenant` at once for one tenant, each within a hard deadline (DNS, connect, send and a capped read of
the answer), so a slow or dead receiver delays only its own tenant. Every delivery checks its destination
first (`review_ui.webhook_destinations`).

How a delivery is sent depends on its `channel` (`review_ui.delivery_channels`): `webhook` is the tenant's
Standard Webhooks signature, always present; other channels (an LMS's callbacks) are given to the sender by
the composition root, and a sender claims only the deliveries of the channels it has.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import utcnow
from core.lms_tables import SessionCallback
from core.secrets_box import SecretBox
from core.tables import Tenant, WebhookDelivery
from core.vocabulary import DeliveryState
from review_ui.delivery_channels import (
    WEBHOOK_CHANNEL,
    Answer,
    Claim,
    DeliveryChannel,
    Outcome,
    Post,
    Prepared,
    outcome_of,
)
from review_ui.webhook_destinations import (
    DestinationRefused,
    DestinationRules,
    Resolver,
    resolve_destination,
    system_resolve,
)

log = logging.getLogger(__name__)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # Standard Webhooks: at least 24 bytes (192 bits)
MAX_BACKOFF = timedelta(hours=1)
STOP_GRACE_S = 2.0  # on stop, deliveries in flight get this long; the rest are retried when their lease ends
USER_AGENT: Final = "proctor-pipeline-webhooks"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key a `whsec_<base64>` secret stands for."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64; issue a new one") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret holds at least {MIN_SECRET_BYTES} bytes, this one {len(key)}")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(signing_key(secret), signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, message_id, timestamp, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: datetime, tolerance_s: int = 300) -> bool:
    """What a platform runs on receipt: one `v1` signature matches and the timestamp is fresh (no replays)."""
    lower = {name.lower(): value for name, value in headers.items()}
    message_id, timestamp, signatures = (lower.get(h, "") for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not message_id or not timestamp.isdigit() or abs(now.timestamp() - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, message_id, int(timestamp), body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split(" "))


def secret_purpose(tenant_id: str) -> str:
    return f"tenants.webhook_secret:{tenant_id}"


def seal_secret(box: SecretBox, tenant_id: str, secret: str) -> str:
    return box.seal(secret, secret_purpose(tenant_id))


def enqueue(db: Session, tenant: Tenant, session_id: str, event: str, body: str, now: datetime) -> None:
    """Owe the tenant a delivery (nothing happens if the tenant has no webhook URL)."""
    if not tenant.webhook_url or not tenant.webhook_secret:
        return
    db.add(
        WebhookDelivery(
            tenant_id=tenant.id,
            session_id=session_id,
            event=event,
            url=tenant.webhook_url,
            body=body,
            next_attempt_at=now,
        )
    )


def enqueue_session_callbacks(
    db: Session, tenant_id: str, session_id: str, event: str, body: str, now: datetime
) -> int:
    """Owe each delivery that the session's `SessionCallback` rows register for `event` (an LMS's `reviewed`
    callback, say), with the same body as the tenant's webhook; returns how many."""
    callbacks = db.scalars(
        select(SessionCallback).where(SessionCallback.session_id == session_id, SessionCallback.event == event)
    ).all()
    for callback in callbacks:
        db.add(
            WebhookDelivery(
                tenant_id=tenant_id,
                session_id=session_id,
                event=event,
                url=callback.url,
                body=body,
                next_attempt_at=now,
                channel=callback.channel,
                ref=callback.ref,
            )
        )
    return len(callbacks)


@dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    secrets: SecretBox
    max_attempts: int = 8
    backoff_s: float = 5.0
    timeout_s: float = 15.0  # the whole attempt, however slowly the receiver trickles
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    max_response_bytes: int = 64 * 1024
    concurrency: int = 16
    per_tenant: int = 2
    destinations: DestinationRules = field(default_factory=DestinationRules)

    def __post_init__(self) -> None:
        if min(self.timeout_s, self.connect_timeout_s, self.read_timeout_s, self.backoff_s) <= 0:
            raise ValueError(f"webhook timeouts and backoff must be positive: {self}")
        if self.max_attempts < 1 or self.max_response_bytes < 0 or not 1 <= self.per_tenant <= self.concurrency:
            raise ValueError(
                f"need max_attempts >= 1, max_response_bytes >= 0 and 1 <= per_tenant <= concurrency: {self}"
            )

    @property
    def lease(self) -> timedelta:
        """How long a claim holds a delivery: past the attempt's deadline and the write of its result."""
        return timedelta(seconds=self.timeout_s * 2 + 30)


def retry_delay(policy: DeliveryPolicy, attempts: int, retry_after_s: float | None = None) -> timedelta:
    """Exponential backoff: backoff_s after the first failure, doubling, or the receiver's Retry-After if
    longer; capped at an hour."""
    backoff = timedelta(seconds=policy.backoff_s * 2 ** (attempts - 1))
    return min(max(backoff, timedelta(seconds=retry_after_s or 0)), MAX_BACKOFF)


class StandardWebhooks:
    """The `webhook` channel: the stored body, signed with the tenant's secret (opened only to sign)."""

    def __init__(self, secrets: SecretBox) -> None:
        self.secrets = secrets

    async def prepare(self, claim: Claim, post: Post) -> Prepared | Outcome:
        if not claim.sealed_secret:
            return Outcome(None, f"tenant {claim.tenant_slug} has no webhook secret any more", final=True)
        try:
            secret = self.secrets.open(claim.sealed_secret, secret_purpose(claim.tenant_id))
            signing_key(secret)
        except ValueError as exc:  # SecretBoxError included: no key, the wrong key, a secret kept in clear
            return Outcome(None, f"{exc} (`proctor tenants webhook {claim.tenant_slug} <url>` issues one)")
        return Prepared(
            {"Content-Type": "application/json"},
            claim.body,
            stamped=lambda: signed_headers(secret, claim.id, int(time.time()), claim.body),
        )

    def answered(self, claim: Claim, outcome: Outcome) -> Outcome:
        return outcome


class WebhookSender:
    """Sends due deliveries: `send_due` once, or `run` on a thread until `stop` is set.

    `channels` are the senders of channels besides `webhook` (e.g. `openedx`); deliveries of a channel this
    sender was not given stay pending for a sender that has it."""

    def __init__(
        self,
        db: sessionmaker[Session],
        policy: DeliveryPolicy,
        resolve: Resolver = system_resolve,
        channels: Mapping[str, DeliveryChannel] | None = None,
    ) -> None:
        self.db = db
        self.policy = policy
        self.resolve = resolve
        self.channels: dict[str, DeliveryChannel] = {WEBHOOK_CHANNEL: StandardWebhooks(policy.secrets)}
        self.channels.update(channels or {})
        self.stop = threading.Event()

    def send_due(self, now: datetime | None = None) -> int:
        """Attempt the deliveries due at `now` that the concurrency bounds admit; returns how many."""
        now = now or utcnow()
        claims = self._claim(now, self.policy.concurrency, Counter())
        if claims:
            asyncio.run(self._deliver_all(claims, now))
        return len(claims)

    def run(self, poll_s: float = 1.0) -> None:
        asyncio.run(self._run(poll_s))

    async def _deliver_all(self, claims: list[Claim], now: datetime) -> None:
        await asyncio.gather(*(self._deliver(claim, now) for claim in claims))

    async def _run(self, poll_s: float) -> None:
        in_flight: dict[asyncio.Task[None], str] = {}
        while not self.stop.is_set():
            free = self.policy.concurrency - len(in_flight)
            if free > 0:
                try:
                    now = utcnow()
                    claims = await asyncio.to_thread(self._claim, now, free, Counter(in_flight.values()))
                except Exception:  # keep the sender alive across a database hiccup; the rows stay pending
                    log.exception("webhook claim failed")
                    claims = []
                for claim in claims:
                    task = asyncio.create_task(self._deliver(claim, now))
                    in_flight[task] = claim.tenant_id
                    task.add_done_callback(lambda done: in_flight.pop(done, None))
            await asyncio.sleep(poll_s)
        if in_flight:
            _, unfinished = await asyncio.wait(list(in_flight), timeout=STOP_GRACE_S)
            for task in unfinished:
                task.cancel()

    def _claim(self, now: datetime, slots: int, busy: Counter[str]) -> list[Claim]:
        """Lease up to `slots` due deliveries, oldest first but round-robin across tenants, at most
        `per_tenant` in flight for one tenant (counting `busy`), and commit."""
        rank = func.row_number().over(
            partition_by=WebhookDelivery.tenant_id, order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        )
        due = (
            select(WebhookDelivery.id, WebhookDelivery.tenant_id, WebhookDelivery.next_attempt_at, rank.label("rank"))
            .where(
                WebhookDelivery.state == DeliveryState.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
                WebhookDelivery.channel.in_(list(self.channels)),
            )
            .subquery()
        )
        with self.db() as db:
            ranked = db.execute(
                select(due.c.id, due.c.tenant_id)
                .where(due.c.rank <= self.policy.per_tenant)
                .order_by(due.c.rank, due.c.next_attempt_at)
            ).all()
            taken: Counter[str] = Counter(busy)
            picked: list[str] = []
            for delivery_id, tenant_id in ranked:
                if len(picked) < slots and taken[tenant_id] < self.policy.per_tenant:
                    taken[tenant_id] += 1
                    picked.append(delivery_id)
            claimed = [delivery_id for delivery_id in picked if self._lease(db, delivery_id, now)]
            db.commit()
            rows = db.execute(
                select(WebhookDelivery, Tenant.slug, Tenant.webhook_secret)
                .join(Tenant, Tenant.id == WebhookDelivery.tenant_id)
                .where(WebhookDelivery.id.in_(claimed))
                .order_by(WebhookDelivery.next_attempt_at)
            ).all()
            return [
                Claim(
                    d.id,
                    d.tenant_id,
                    slug,
                    d.session_id,
                    d.url,
                    d.body.encode(),
                    d.attempts,
                    sealed,
                    channel=d.channel,
                    ref=d.ref,
                    event=d.event,
                )
                for d, slug, sealed in rows
            ]

    def _lease(self, db: Session, delivery_id: str, now: datetime) -> bool:
        claimed = db.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.state == DeliveryState.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + self.policy.lease, attempts=WebhookDelivery.attempts + 1)
        )
        return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]

    async def _deliver(self, claim: Claim, now: datetime) -> None:
        started = time.monotonic()
        outcome = await self._attempt(claim)
        elapsed_s = time.monotonic() - started
        try:
            await asyncio.to_thread(self._record, claim, outcome, now + timedelta(seconds=elapsed_s), elapsed_s)
        except Exception:  # the lease runs out and another pass retries it
            log.exception("webhook result not recorded", extra={"delivery": claim.id, "session_id": claim.session_id})

    async def _attempt(self, claim: Claim) -> Outcome:
        policy = self.policy
        channel = self.channels[claim.channel]
        try:
            async with asyncio.timeout(policy.timeout_s):
                prepared = await channel.prepare(claim, self._post)
                if isinstance(prepared, Outcome):
                    return prepared
                answer = await self._post(claim.url, prepared.headers, prepared.body, prepared.stamped)
                return channel.answered(claim, outcome_of(answer))
        except DestinationRefused as exc:
            return Outcome(None, str(exc), final=True)
        except TimeoutError:
            return Outcome(None, f"no complete answer within {policy.timeout_s:g} s (PROCTOR_WEBHOOK_TIMEOUT_S)")
        except httpx.ConnectTimeout:
            return Outcome(
                None, f"no connection within {policy.connect_timeout_s:g} s (PROCTOR_WEBHOOK_CONNECT_TIMEOUT_S)"
            )
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            waited = f"{policy.read_timeout_s:g} s (PROCTOR_WEBHOOK_READ_TIMEOUT_S)"
            return Outcome(None, f"{type(exc).__name__}: the receiver sent or took nothing for {waited}")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")
        except OSError as exc:  # the host does not resolve
            return Outcome(None, f"the webhook host does not resolve: {exc}")

    async def _post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        stamped: Callable[[], Mapping[str, str]] | None = None,
    ) -> Answer:
        """Check the destination, then POST to each of its checked addresses in turn until one connects, with
        `stamped()` headers made right before each; read at most max_response_bytes back. Every call a channel
        makes goes through here too."""
        policy = self.policy
        destination = await resolve_destination(url, policy.destinations, self.resolve)
        timeout = httpx.Timeout(
            connect=policy.connect_timeout_s,
            read=policy.read_timeout_s,
            write=policy.read_timeout_s,
            pool=policy.connect_timeout_s,
        )
        # A client per call: connections are to checked addresses, never pooled across hosts or tenants.
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False) as client:
            refused: httpx.TransportError | None = None
            for address in destination.addresses:
                sent = {**headers, **(stamped() if stamped else {}), "Host": destination.host_header}
                sent["User-Agent"] = USER_AGENT
                request = client.build_request(
                    "POST", destination.target(address), content=body, headers=sent, extensions=destination.extensions
                )
                try:
                    response = await client.send(request, stream=True)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    refused = exc
                    continue
                try:
                    head = await _read_capped(response, policy.max_response_bytes)
                finally:
                    await response.aclose()
                return Answer(response.status_code, dict(response.headers), head)
            assert refused is not None  # a Destination has at least one address
            raise refused

    def _record(self, claim: Claim, outcome: Outcome, finished: datetime, elapsed_s: float) -> None:
        """Write the attempt's result in its own transaction, unless another sender took the delivery over."""
        values: dict[str, object] = {"last_status": outcome.status, "last_error": outcome.error}
        if outcome.delivered:
            values |= {"state": DeliveryState.DELIVERED.value, "delivered_at": utcnow()}
        elif outcome.final or claim.attempt >= self.policy.max_attempts:
            values |= {"state": DeliveryState.FAILED.value, "last_error": outcome.error or f"HTTP {outcome.status}"}
        else:
            values["next_attempt_at"] = finished + retry_delay(self.policy, claim.attempt, outcome.retry_after_s)
        with self.db() as db:
            written = db.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == claim.id,
                    WebhookDelivery.attempts == claim.attempt,
                    WebhookDelivery.state == DeliveryState.PENDING.value,
                )
                .values(**values)
            )
            db.commit()
        log.info(
            "webhook attempt",
            extra={
                "delivery": claim.id,
                "channel": claim.channel,
                "event": claim.event,
                "tenant": claim.tenant_slug,
                "session_id": claim.session_id,
                "host": httpx.URL(claim.url).host,
                "attempt": claim.attempt,
                "status": outcome.status,
                "state": values.get("state", DeliveryState.PENDING.value),
                "error": outcome.error,
                "elapsed_ms": round(elapsed_s * 1000),
                "recorded": written.rowcount == 1,  # type: ignore[attr-defined]
            },
        )


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    """At most `cap` bytes of the body as sent (undecoded: a compressed answer cannot expand here)."""
    head = bytearray()
    if cap > 0:
        async for chunk in response.aiter_raw():
            head += chunk[: cap - len(head)]
            if len(head) >= cap:
                break
    return bytes(head)
