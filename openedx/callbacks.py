"""Our calls back to an Open edX LMS (`ready`, `reviewed`): the `openedx` channel of the webhook outbox.

The outbox's sender (`review_ui.webhooks.WebhookSender`) claims, retries, checks destinations and records;
this channel makes each POST. The LMS authenticates us with edx-drf-extensions' JWT authentication: we take
a token from `<lms_url>/oauth2/access_token` (client credentials, `token_type=jwt`) with the OAuth client the
LMS gave us (`EdxClient.lms_client_id` and its sealed secret) and send `Authorization: JWT <token>`. Tokens
are kept per client in this channel's memory and fetched again shortly before they expire; a 401 from the
LMS drops the one it was sent with, and the delivery is retried later with a fresh one. An LMS that refuses
our client credentials fails the delivery for good, saying which credentials to set. The token request goes
through the sender too, so it meets the same destination checks and deadline as the callback.

`openedx.ready` is sent as stored (`{"status": "ready"}`). `review.final` carries our review (the platform's
webhook body, `review_ui.results.ReviewResult`), which becomes edX's review payload (edx-proctoring's
docs/backends.rst, read by `BaseReviewCallback.make_review`): a status in edX's vocabulary, one comment per
flag with its kind, the reviewer's decision and note, and its start and stop in whole seconds of the
recording; and `reviewed_by`, the email of the course team member who decided, when one did (a reviewer
who signed in from the LMS's instructor dashboard, `openedx.dashboard`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import urlencode

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from core.lms_tables import EdxClient
from core.secrets_box import SecretBox, SecretBoxError
from core.tables import User
from core.vocabulary import FlagSource
from core.vocabulary import Outcome as ReviewOutcome
from openedx.clients import lms_secret_purpose
from openedx.instructor import instructor_email
from openedx.recorder_side import CHANNEL, READY_EVENT, REVIEWED_EVENT
from review_ui.delivery_channels import Claim, Outcome, Post, Prepared
from review_ui.results import FlagResult, ReviewResult

log = logging.getLogger(__name__)

TOKEN_PATH: Final = "/oauth2/access_token"
REFRESH_MARGIN_S: Final = 60.0  # a token is fetched again this long before it expires (or at half its life)
DEFAULT_TOKEN_LIFE_S: Final = 300.0  # when the LMS does not say (`expires_in`)
EDX_STATUS: Final = {
    ReviewOutcome.CLEAN: "passed",
    ReviewOutcome.RULES_VIOLATION: "violation",
    ReviewOutcome.SUSPICIOUS: "suspicious",
    ReviewOutcome.NOT_REVIEWED: "not_reviewed",
}
"""Our outcomes (edX's old SoftwareSecure vocabulary) as edx-proctoring's `ReviewStatus`."""
OPENEDX_CHANNEL: Final = CHANNEL


def edx_review(review: ReviewResult, reviewed_by: str | None) -> dict[str, Any]:
    """edX's review payload for a final review: its status, one comment per flag, and who reviewed it."""
    if review.outcome is None:
        raise ValueError(f"session {review.session_id}'s review is not final; edX is told only final outcomes")
    payload: dict[str, Any] = {
        "status": EDX_STATUS[review.outcome],
        "comments": [flag_comment(flag) for flag in review.flags],
    }
    if reviewed_by:
        payload["reviewed_by"] = reviewed_by
    return payload


def flag_comment(flag: FlagResult) -> dict[str, Any]:
    """One flag as an edX review comment; start and stop are whole seconds that cover the flag."""
    start = math.floor(flag.start_s)
    stop = max(math.ceil(flag.end_s), start)
    decision = flag.decision.value if flag.decision else "undecided"
    by = "added by the reviewer" if flag.source == FlagSource.REVIEWER else "flagged by the detectors"
    note = f": {flag.note}" if flag.note else ""
    return {
        "comment": f"{flag.kind.value.replace('_', ' ')} ({by}), {decision}{note}",
        "status": decision,
        "start": start,
        "stop": stop,
        "duration": stop - start,
    }


def deciders(review: ReviewResult) -> list[str]:
    """The ids of the reviewers who made the outcome, the one who made it final first (from its version in the
    history: the comments list only the notes the reviewers shared)."""
    if not review.history:
        return []
    current = review.history[-1]
    return [who for who in (current.second_by, current.decided_by) if who]


@dataclass(frozen=True)
class LmsClient:
    """What it takes to call one LMS: its root, and the OAuth client it gave us (the secret opened)."""

    pk: str
    client_id: str
    lms_url: str
    oauth_client_id: str
    oauth_secret: str = field(repr=False)


@dataclass(frozen=True)
class LmsToken:
    value: str = field(repr=False)
    refresh_at: float  # on the channel's monotonic clock


class LmsCallbacks:
    """The `openedx` delivery channel (`review_ui.delivery_channels.DeliveryChannel`)."""

    def __init__(
        self, db: sessionmaker[Session], secrets: SecretBox, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.secrets = secrets
        self.clock = clock
        self.tokens: dict[str, LmsToken] = {}  # EdxClient.id -> its LMS's token

    async def prepare(self, claim: Claim, post: Post) -> Prepared | Outcome:
        loaded = await asyncio.to_thread(self._load, claim)
        if isinstance(loaded, Outcome):
            return loaded
        client, body = loaded
        token = await self._token(client, post)
        if isinstance(token, Outcome):
            return token
        headers = {"Authorization": f"JWT {token}", "Content-Type": "application/json", "Accept": "application/json"}
        return Prepared(headers, body)

    def answered(self, claim: Claim, outcome: Outcome) -> Outcome:
        if outcome.status == 401 and claim.ref is not None:
            self.tokens.pop(claim.ref, None)
            return replace(outcome, error=f"{outcome.error}; the LMS refused our token, a new one is fetched next time")
        return outcome

    def _load(self, claim: Claim) -> tuple[LmsClient, bytes] | Outcome:
        """The claim's client, with its LMS credentials opened, and the body edX is to receive."""
        with self.db() as db:
            row = db.get(EdxClient, claim.ref) if claim.ref else None
            if row is None or row.revoked_at is not None:
                return Outcome(None, f"the Open edX client {claim.ref} is gone or revoked; edX is not told", final=True)
            if not claim.url.startswith(row.lms_url + "/"):
                return Outcome(None, f"{claim.url} is not on client {row.client_id}'s LMS {row.lms_url}", final=True)
            if not row.lms_client_id or not row.lms_secret_sealed:
                return Outcome(
                    None,
                    f"client {row.client_id} has no OAuth client of its LMS to call it with: set the client id and "
                    "secret the LMS issued for us",
                    final=True,
                )
            try:
                secret = self.secrets.open(row.lms_secret_sealed, lms_secret_purpose(row.id))
            except SecretBoxError as exc:  # no key or the wrong key: the operator can fix it, so retried
                return Outcome(None, f"client {row.client_id}'s LMS secret does not open: {exc}")
            client = LmsClient(row.id, row.client_id, row.lms_url, row.lms_client_id, secret)
            if claim.event == READY_EVENT:
                return client, claim.body
            if claim.event != REVIEWED_EVENT:
                return Outcome(
                    None, f"the openedx channel sends {READY_EVENT} and {REVIEWED_EVENT}, not {claim.event}", final=True
                )
            try:
                review = ReviewResult.model_validate(json.loads(claim.body)["review"])
                reviewed_by = next(
                    (email for who in deciders(review) if (email := _edx_email(db, row.client_id, who))), None
                )
                return client, json.dumps(edx_review(review, reviewed_by)).encode()
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                return Outcome(None, f"the stored review is not one edX can be sent: {exc}", final=True)

    async def _token(self, client: LmsClient, post: Post) -> str | Outcome:
        """The LMS's token for us: the cached one while it has a margin left, else a new one."""
        cached = self.tokens.get(client.pk)
        if cached is not None and self.clock() < cached.refresh_at:
            return cached.value
        form = {
            "grant_type": "client_credentials",
            "client_id": client.oauth_client_id,
            "client_secret": client.oauth_secret,
            "token_type": "jwt",
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        asked_at = self.clock()
        answer = await post(client.lms_url + TOKEN_PATH, headers, urlencode(form).encode())
        said = answer.body[:200].decode("utf-8", "replace").strip()
        if answer.status in (400, 401, 403):
            return Outcome(
                answer.status,
                f"the LMS refused our OAuth client {client.oauth_client_id} (HTTP {answer.status}: {said}): set the "
                f"client id and secret that {client.lms_url} issued for us",
                final=True,
            )
        if not 200 <= answer.status < 300:
            return Outcome(answer.status, f"the LMS's token endpoint answered HTTP {answer.status}: {said}")
        try:
            issued = json.loads(answer.body)
            value, life = issued["access_token"], float(issued.get("expires_in") or DEFAULT_TOKEN_LIFE_S)
            if not isinstance(value, str) or not value:
                raise ValueError("no access_token")
        except (ValueError, KeyError, TypeError) as exc:
            return Outcome(answer.status, f"the LMS's token endpoint answered no token ({exc}): {said}")
        self.tokens[client.pk] = LmsToken(value, asked_at + max(life - REFRESH_MARGIN_S, life / 2))
        log.info("lms token issued", extra={"edx_client": client.client_id, "expires_in_s": life})
        return value


def _edx_email(db: Session, client_id: str, user_id: str) -> str | None:
    user = db.get(User, user_id)
    return instructor_email(client_id, user.username) if user else None
