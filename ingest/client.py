"""Client of the `/v1` upload protocol: what `proctor ingest` runs, and a reference for platform integrators.

Resuming is the normal path, not a special case: the client asks the server which parts it already has and
sends only the others, so running the same upload again after a crash or a dropped connection finishes it.
The Idempotency-Key is derived from the exam, candidate, attempt and file checksums, so the re-run finds
the same session instead of creating a second one.

Retries: a connection error, a 5xx or a 429 is retried with capped exponential backoff and jitter, never
sooner than the server's `Retry-After`, until one request has waited `RetryPolicy.give_up_after_s` in all;
then `ServerUnavailable` (or the last `IngestRequestError`, a 5xx) is raised, and re-running the upload later
resumes it. A 4xx is the server refusing this request, and sending it again would be refused again: it is
raised at once. The one exception is the protocol's `409 complete_in_progress` (another request is verifying
the same file), which says to retry in a few seconds. Each wait is reported to `on_wait`, for a status line.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class IngestRequestError(RuntimeError):
    """The API answered with an error status; `code` is its machine-readable reason.

    A 4xx is a refusal of this request (`refused`); a 5xx (or a 429) is the server's fault or an outage,
    raised only once the retries ran out."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}

    @property
    def refused(self) -> bool:
        """A refusal (sending it again would be refused again), not a fault or an outage to outwait."""
        return not retryable(self.status, self.code)


class ServerUnavailable(RuntimeError):
    """The API could not be reached (connection errors, timeouts) for as long as the retry policy waits."""


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter, never shorter than the server's `Retry-After`; a request is
    given up once its waits would add up to more than `give_up_after_s`."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    give_up_after_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.first_delay_s <= self.max_delay_s or self.give_up_after_s < 0:
            raise ValueError(
                "RetryPolicy needs 0 < first_delay_s <= max_delay_s and give_up_after_s >= 0, got "
                f"{self.first_delay_s}, {self.max_delay_s} and {self.give_up_after_s}"
            )

    def delay(self, attempt: int, retry_after_s: float | None, jitter: float) -> float:
        """The wait before retry number `attempt` (1, 2, ...); `jitter` in [0, 1) spreads clients apart."""
        backoff = min(self.max_delay_s, self.first_delay_s * 2.0 ** (attempt - 1) * (0.5 + jitter))
        return backoff if retry_after_s is None else max(retry_after_s, backoff)


@dataclass(frozen=True)
class Waiting:
    """A request waiting to be retried: what it is, why, and until when (`time.monotonic()`)."""

    request: str
    reason: str
    attempt: int
    delay_s: float
    until: float


def retryable(status: int, code: str | None) -> bool:
    """Whether an error answer may succeed if sent again unchanged (see the module's docstring)."""
    return status in RETRYABLE_STATUS or (status == 409 and code == "complete_in_progress")


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header's wait in seconds (delta-seconds or an HTTP date), None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class LocalMedia:
    kind: str
    path: Path
    size: int
    sha256: str
    content_type: str

    @classmethod
    def from_path(cls, kind: str, path: Path) -> LocalMedia:
        content_type = "application/x-ndjson" if kind == "events" else CONTENT_TYPES.get(path.suffix.lower())
        if kind == "enrolment_photo" and content_type not in ("image/jpeg", "image/png"):
            raise ValueError(f"{path.name}: an enrolment photo must be a .jpg or .png, not {path.suffix!r}")
        if content_type is None or (kind != "enrolment_photo" and content_type.startswith("image/")):
            raise ValueError(f"{path.name}: unknown video type {path.suffix!r}; use .mp4, .webm, .mkv or .mov")
        return cls(kind, path, path.stat().st_size, sha256_file(path), content_type)


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


class IngestClient:
    """`on_wait(request, waiting)` is called before each wait to retry `request`, and with None once a
    request that waited has an answer (from the threads that send parts in parallel, too)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        on_wait: Callable[[str, Waiting | None], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )
        self._retry = retry or RetryPolicy()
        self._on_wait = on_wait

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send, retrying what may succeed later (see the module's docstring); raise `IngestRequestError` for an
        error answer and `ServerUnavailable` when the API cannot be reached."""
        what = f"{method} {path}"
        waited_s, attempt = 0.0, 0
        failure: Exception
        try:
            while True:
                attempt += 1
                try:
                    response = self._http.request(method, path, **kwargs)
                except httpx.TransportError as exc:
                    reason, hint, failure = f"no answer ({str(exc) or type(exc).__name__})", None, exc
                else:
                    if response.is_success:
                        result: dict[str, Any] = response.json()
                        return result
                    failure = _request_error(response)
                    if not retryable(failure.status, failure.code):
                        raise failure
                    reason = f"{failure.status} {failure.code}"
                    hint = retry_after_s(response.headers.get("Retry-After"), datetime.now(UTC))
                delay = self._retry.delay(attempt, hint, random.random())
                if waited_s + delay > self._retry.give_up_after_s:
                    log.warning("giving up on request", extra={"request": what, "why": reason, "waited_s": waited_s})
                    if isinstance(failure, IngestRequestError):
                        raise failure
                    raise ServerUnavailable(
                        f"{what}: {reason}, still after {attempt} attempts over {waited_s:.0f} s; check that the API "
                        "is up and reachable, then run the same upload again to resume it"
                    ) from failure
                waited_s += delay
                log.debug(
                    "retrying request", extra={"request": what, "why": reason, "attempt": attempt, "delay_s": delay}
                )
                if self._on_wait is not None:
                    self._on_wait(what, Waiting(what, reason, attempt, delay, time.monotonic() + delay))
                time.sleep(delay)
        finally:
            if attempt > 1 and self._on_wait is not None:
                self._on_wait(what, None)

    # -- the protocol -----------------------------------------------------------------------------------
    def register(
        self,
        *,
        exam_id: str,
        candidate_id: str,
        attempt_id: str,
        started_at: datetime,
        media: list[LocalMedia],
        idempotency_key: str,
    ) -> dict[str, Any]:
        body = {
            "exam_id": exam_id,
            "candidate_id": candidate_id,
            "attempt_id": attempt_id,
            "started_at": started_at.isoformat(),
            "media": [
                {"kind": m.kind, "size_bytes": m.size, "sha256": m.sha256, "content_type": m.content_type}
                for m in media
            ],
        }
        return self.request("POST", "/v1/sessions", json=body, headers={"Idempotency-Key": idempotency_key})

    def upload_media(
        self,
        session_id: str,
        media: LocalMedia,
        *,
        parallel: int = 4,
        on_bytes: Callable[[int], None] | None = None,
        on_resumed: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Send the parts the server lacks, then complete. Returns the session as the server reports it.

        `on_bytes` counts the bytes sent; the bytes the server already had go to `on_resumed` if it is given
        (a transfer rate must not count them), else to `on_bytes` too.
        """
        base = f"/v1/sessions/{session_id}/media/{media.kind}"
        state = self.request("GET", f"{base}/parts")
        part_size, missing = int(state["part_size"]), [int(n) for n in state["missing"]]
        resumed = on_resumed or on_bytes
        if resumed is not None:
            resumed(media.size - sum(_part_length(media.size, part_size, n) for n in missing))

        def send(number: int) -> None:
            length = _part_length(media.size, part_size, number)
            with media.path.open("rb") as f:
                f.seek((number - 1) * part_size)
                data = f.read(length)
            headers = {"X-Part-SHA256": hashlib.sha256(data).hexdigest(), "Content-Type": "application/octet-stream"}
            self.request("PUT", f"{base}/parts/{number}", content=data, headers=headers)
            if on_bytes is not None:
                on_bytes(length)

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(send, n) for n in missing]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:  # the parts not started yet; those in flight finish or give up
                    future.cancel()
                raise
        return self.request("POST", f"{base}/complete")

    def session(self, session_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/sessions/{session_id}")


def _part_length(size: int, part_size: int, number: int) -> int:
    return min(part_size, size - (number - 1) * part_size)


def _request_error(response: httpx.Response) -> IngestRequestError:
    body = _json(response)
    return IngestRequestError(
        response.status_code, str(body.get("code", "http_error")), str(body.get("detail", response.text)), body
    )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def idempotency_key_for(exam_id: str, candidate_id: str, attempt_id: str, media: list[LocalMedia]) -> str:
    material = "|".join([exam_id, candidate_id, attempt_id, *(f"{m.kind}:{m.sha256}" for m in media)])
    return "cli-" + hashlib.sha256(material.encode()).hexdigest()[:40]


def upload_session(
    client: IngestClient,
    *,
    webcam: Path,
    exam_id: str,
    candidate_id: str,
    attempt_id: str | None = None,
    screen: Path | None = None,
    events: Path | None = None,
    enrolment_photo: Path | None = None,
    enrolment_clip: Path | None = None,
    started_at: datetime | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_resumed: Callable[[int], None] | None = None,
    parallel: int = 4,
) -> dict[str, Any]:
    """Register (or find again) a session and upload all its files; the whole call can simply be re-run.

    The candidate's enrolment photo or clip goes first, so the pipeline finds it when the recording is queued;
    a refused one (an `enrolment_*` code, in the returned session's media) does not stop the recording's upload.
    `on_bytes` and `on_resumed` count bytes as `IngestClient.upload_media` does.
    """
    media = [LocalMedia.from_path("webcam", webcam)]
    if screen is not None:
        media.append(LocalMedia.from_path("screen", screen))
    if events is not None:
        media.append(LocalMedia.from_path("events", events))
    attempt = attempt_id or "a-" + media[0].sha256[:16]
    for kind, path in (("enrolment_photo", enrolment_photo), ("enrolment_clip", enrolment_clip)):
        if path is not None:
            media.insert(0, LocalMedia.from_path(kind, path))
    try:
        session = client.register(
            exam_id=exam_id,
            candidate_id=candidate_id,
            attempt_id=attempt,
            started_at=started_at or datetime.fromtimestamp(webcam.stat().st_mtime, UTC),
            media=media,
            idempotency_key=idempotency_key_for(exam_id, candidate_id, attempt, media),
        )
    except IngestRequestError as exc:
        # Registered before under other details (say, a copied file's new mtime): resume it if the files match.
        existing = exc.body.get("details", {}).get("session_id") if exc.code == "attempt_already_registered" else None
        if existing is None:
            raise
        session = client.session(existing)
        if {(m["kind"], m["sha256"]) for m in session["media"]} != {(m.kind, m.sha256) for m in media}:
            raise
    done = {m["kind"] for m in session["media"] if m["state"] == "complete"}
    stale = False  # a refused enrolment leaves the last session seen out of date
    for item in media:
        if item.kind in done:
            resumed = on_resumed or on_bytes
            if resumed is not None:
                resumed(item.size)
            continue
        try:
            uploaded = client.upload_media(
                session["id"], item, parallel=parallel, on_bytes=on_bytes, on_resumed=on_resumed
            )
            session, stale = uploaded, False
        except IngestRequestError as exc:
            if not (item.kind.startswith("enrolment_") and exc.status == 422):
                raise
            log.warning("enrolment refused", extra={"kind": item.kind, "code": exc.code, "reason": exc.message})
            stale = True
    return client.session(session["id"]) if stale else session
