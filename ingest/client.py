"""Client of the `/v1` upload protocol: what `proctor ingest` runs, and a reference for platform integrators.

Resuming is the normal path, not a special case: the client asks the server which parts it already has and
sends only the others, so running the same upload again after a crash or a dropped connection finishes it.
The Idempotency-Key is derived from the exam, candidate, attempt and file checksums, so the re-run finds
the same session instead of creating a second one.
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
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class IngestRequestError(RuntimeError):
    """The API refused a request; `code` is its machine-readable reason."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}


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
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 120.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )
        self._retries = retries

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send with retries on connection errors and transient statuses; raise `IngestRequestError` on refusal."""
        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise
                self._pause(attempt, f"{method} {path}: {exc}")
                continue
            retry_later = response.status_code == 409 and _code(response) == "complete_in_progress"
            if (response.status_code in RETRYABLE_STATUS or retry_later) and attempt < self._retries:
                self._pause(attempt, f"{method} {path}: HTTP {response.status_code}")
                continue
            if response.is_success:
                result: dict[str, Any] = response.json()
                return result
            body = _json(response)
            raise IngestRequestError(
                response.status_code, str(body.get("code", "http_error")), str(body.get("detail", response.text)), body
            )
        raise AssertionError("unreachable: the loop returns or raises")

    @staticmethod
    def _pause(attempt: int, why: str) -> None:
        delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
        log.warning("retrying request", extra={"why": why, "attempt": attempt + 1, "delay_s": round(delay, 2)})
        time.sleep(delay)

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
    ) -> dict[str, Any]:
        """Send the parts the server lacks, then complete. Returns the session as the server reports it."""
        base = f"/v1/sessions/{session_id}/media/{media.kind}"
        state = self.request("GET", f"{base}/parts")
        part_size, missing = int(state["part_size"]), [int(n) for n in state["missing"]]
        if on_bytes is not None:
            on_bytes(media.size - sum(_part_length(media.size, part_size, n) for n in missing))

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
            for future in [pool.submit(send, n) for n in missing]:
                future.result()
        return self.request("POST", f"{base}/complete")

    def session(self, session_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/sessions/{session_id}")


def _part_length(size: int, part_size: int, number: int) -> int:
    return min(part_size, size - (number - 1) * part_size)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _code(response: httpx.Response) -> str | None:
    code = _json(response).get("code")
    return str(code) if code is not None else None


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
    parallel: int = 4,
) -> dict[str, Any]:
    """Register (or find again) a session and upload all its files; the whole call can simply be re-run.

    The candidate's enrolment photo or clip goes first, so the pipeline finds it when the recording is queued;
    a refused one (an `enrolment_*` code, in the returned session's media) does not stop the recording's upload.
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
            if on_bytes is not None:
                on_bytes(item.size)
            continue
        try:
            session, stale = client.upload_media(session["id"], item, parallel=parallel, on_bytes=on_bytes), False
        except IngestRequestError as exc:
            if not (item.kind.startswith("enrolment_") and exc.status == 422):
                raise
            log.warning("enrolment refused", extra={"kind": item.kind, "code": exc.code, "reason": exc.message})
            stale = True
    return client.session(session["id"]) if stale else session
