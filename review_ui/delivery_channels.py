"""What a delivery channel is: how the outbox's sender turns one claimed delivery into one HTTP POST.

The sender (`review_ui.webhooks.WebhookSender`) owns what every receiver shares: claiming, leases, retries
with backoff, the destination checks, the deadlines, the capped read of the answer and the recording of the
result. A channel owns what differs between receivers, keyed by `WebhookDelivery.channel`: the headers and
body of the POST (`webhook`: the tenant's Standard Webhooks signature over the stored body; `openedx`: an
LMS's OAuth token and edX's payload), and what an answer means for its credentials (a 401 from an LMS drops
the token it was sent with). A channel that must call out first (for a token, say) does it through the
`Post` it is given, so that call meets the same destination checks and deadline as the delivery itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

WEBHOOK_CHANNEL = "webhook"


@dataclass(frozen=True)
class Claim:
    """A delivery this process holds the lease of, with what it takes to send it."""

    id: str
    tenant_id: str
    tenant_slug: str
    session_id: str
    url: str
    body: bytes = field(repr=False)
    attempt: int
    sealed_secret: str | None = field(repr=False)  # the tenant's webhook secret, sealed (channel `webhook`)
    channel: str = WEBHOOK_CHANNEL
    ref: str | None = None  # the channel's credential, e.g. the EdxClient whose LMS this calls
    event: str = ""


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str | None
    final: bool = False  # no retry: the destination is refused, or the channel cannot ever send it
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Prepared:
    """The POST a channel made of a claim; the sender adds `Host` and `User-Agent`, and `stamped()` right before
    each POST (headers that hold the time, such as a signature over it)."""

    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    stamped: Callable[[], Mapping[str, str]] | None = None


@dataclass(frozen=True)
class Answer:
    """A receiver's answer: its status, headers, and at most the policy's `max_response_bytes` of its body."""

    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


Post = Callable[[str, Mapping[str, str], bytes], Awaitable[Answer]]
"""POST (url, headers, body) through the sender's destination checks, inside the attempt's deadline. Raises
what the sender maps to an `Outcome` (a refused destination, a timeout, a transport error)."""


class DeliveryChannel(Protocol):
    """One way of sending a delivery; the sender looks it up by the delivery's `channel`."""

    async def prepare(self, claim: Claim, post: Post) -> Prepared | Outcome:
        """The POST to send for `claim`, or the Outcome of an attempt that cannot be made (`final` if it never
        can be, e.g. a credential that is gone)."""
        ...

    def answered(self, claim: Claim, outcome: Outcome) -> Outcome:
        """What the receiver's answer means for this channel; returns the outcome to record."""
        ...


def outcome_of(answer: Answer) -> Outcome:
    """The usual reading of an answer: 2xx delivered; a redirect is not followed; else a retry, after the
    receiver's Retry-After if it gave one."""
    status = answer.status
    if 200 <= status < 300:
        return Outcome(status, None)
    if 300 <= status < 400:
        return Outcome(status, f"HTTP {status}: redirects are not followed; set the webhook URL to the final one")
    text = answer.body[:200].decode("utf-8", "replace").strip()
    retry_after = {name.lower(): value for name, value in answer.headers.items()}.get("retry-after", "")
    return Outcome(
        status,
        f"HTTP {status}: {text}" if text else f"HTTP {status}",
        retry_after_s=float(retry_after) if retry_after.isdigit() else None,
    )
