"""Signed webhooks to the platform when a review becomes final, with retries and delivery state kept.

The signature header reads `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the timestamp
is inside the MAC, so a receiver that refuses stale timestamps (`verify`, five minutes by default) cannot
be replayed. A delivery is enqueued in the same transaction as the decision that caused it, then sent by
`WebhookSender`, which any number of API processes may run: each claims a due delivery with a conditional
UPDATE before sending, so one delivery is never sent twice at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import utcnow
from core.tables import Tenant, WebhookDelivery
from core.vocabulary import DeliveryState

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Proctor-Signature"
MAX_BACKOFF = timedelta(hours=1)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: datetime, tolerance_s: int = 300) -> bool:
    """What a platform runs on receipt: the MAC matches and the timestamp is fresh (no replays)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in fields or "v1" not in fields or not fields["t"].isdigit():
        return False
    timestamp = int(fields["t"])
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


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


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int
    backoff_s: float
    timeout_s: float


def retry_delay(policy: DeliveryPolicy, attempts: int) -> timedelta:
    """Exponential backoff: backoff_s after the first failure, doubling, capped at an hour."""
    return min(timedelta(seconds=policy.backoff_s * 2 ** (attempts - 1)), MAX_BACKOFF)


class WebhookSender:
    """Sends due deliveries; `run` loops on a thread until `stop` is set."""

    def __init__(
        self,
        db: sessionmaker[Session],
        policy: DeliveryPolicy,
        post: Callable[[str, bytes, dict[str, str], float], int] | None = None,
    ) -> None:
        self.db = db
        self.policy = policy
        self.post = post or _http_post
        self.stop = threading.Event()

    def send_due(self, now: datetime | None = None) -> int:
        """Attempt every delivery that is due; returns how many were attempted."""
        now = now or utcnow()
        with self.db() as db:
            due = list(
                db.scalars(
                    select(WebhookDelivery.id)
                    .where(WebhookDelivery.state == DeliveryState.PENDING.value, WebhookDelivery.next_attempt_at <= now)
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(50)
                )
            )
        return sum(self._attempt(delivery_id, now) for delivery_id in due)

    def _attempt(self, delivery_id: str, now: datetime) -> bool:
        lease = now + timedelta(seconds=self.policy.timeout_s * 3)
        with self.db() as db:
            claimed = db.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.state == DeliveryState.PENDING.value,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=lease, attempts=WebhookDelivery.attempts + 1)
            )
            db.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return False
            delivery = db.get(WebhookDelivery, delivery_id)
            tenant = db.get(Tenant, delivery.tenant_id) if delivery else None
            if delivery is None or tenant is None or not tenant.webhook_secret:
                return False
            body = delivery.body.encode()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(tenant.webhook_secret, int(now.timestamp()), body),
                "X-Proctor-Event": delivery.event,
                "X-Proctor-Delivery": delivery.id,
            }
            status, error = None, None
            try:
                status = self.post(delivery.url, body, headers, self.policy.timeout_s)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            delivery.last_status, delivery.last_error = status, error
            if status is not None and 200 <= status < 300:
                delivery.state, delivery.delivered_at = DeliveryState.DELIVERED.value, utcnow()
            elif delivery.attempts >= self.policy.max_attempts:
                delivery.state = DeliveryState.FAILED.value
                delivery.last_error = error or f"HTTP {status}"
            else:
                delivery.next_attempt_at = now + retry_delay(self.policy, delivery.attempts)
            db.commit()
            log.info(
                "webhook attempt",
                extra={
                    "delivery": delivery.id,
                    "session_id": delivery.session_id,
                    "attempt": delivery.attempts,
                    "status": status,
                    "state": delivery.state,
                    "error": error,
                },
            )
        return True

    def run(self, poll_s: float = 1.0) -> None:
        while not self.stop.is_set():
            try:
                self.send_due()
            except Exception:  # keep the sender alive across a database hiccup; the row stays pending
                log.exception("webhook sender pass failed")
            self.stop.wait(poll_s)


def _http_post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=timeout_s).status_code
