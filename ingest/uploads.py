"""The upload protocol: register a session, receive parts, complete and validate, erase.

Each media file is one S3 multipart upload, created when the session is registered. Parts arrive through
the API (streamed, checksummed, one part in memory at most) or straight to S3 through presigned part URLs;
S3's own part list is the truth for what arrived, so a client can resume from any broken connection with
either path. `complete` assembles the parts, then reads the object back once to check size and SHA-256 and
to probe it, and either accepts the media or rejects the session with a machine-readable reason. Nothing is
deleted on rejection: the stored bytes stay for inspection until the session is erased.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any, BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest import audit
from ingest.db import Exam, ExamSession, IdempotencyKey, Job, Media, Tenant, UploadPart, utcnow
from ingest.event_log import parse_event_log
from ingest.keys import SessionPrefix
from ingest.object_store import ObjectExists, ObjectNotFound, ObjectStore, UploadedPart
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from ingest.schemas import (
    IngestError,
    MediaOut,
    PartOut,
    PartsOut,
    PresignedPart,
    ProbeOut,
    ReasonOut,
    SessionCreate,
    SessionOut,
)
from ingest.states import SessionState

log = logging.getLogger(__name__)

MAX_PARTS = 10_000
MIB = 1024 * 1024
VERIFY_TAKEOVER = timedelta(minutes=15)


@dataclass(frozen=True)
class UploadLimits:
    part_size_bytes: int
    max_media_bytes: int
    max_event_log_bytes: int
    presigned_url_ttl_s: int
    probe: ProbeLimits


class HashingReader(io.RawIOBase):
    """Hash the bytes a reader hands out in file order, so one pass both probes and verifies an upload.

    The demuxer reads mostly front to back; whatever it skips or reads out of order is hashed afterwards
    by `finish`, which reads on from the furthest contiguous byte hashed. So the digest is always that of
    the whole object, and in the common case the object is read only once.
    """

    def __init__(self, inner: BinaryIO, size: int) -> None:
        self._inner, self._size, self._hasher, self._frontier = inner, size, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        start = self._inner.tell()
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        end = start + len(data)
        if start <= self._frontier < end:
            self._hasher.update(memoryview(data)[self._frontier - start :])
            self._frontier = end
        return len(data)

    def finish(self) -> tuple[int, str]:
        """Hash whatever was not read in order; returns (bytes seen, hex SHA-256)."""
        self._inner.seek(self._frontier)
        while chunk := self._inner.read(8 * MIB):
            self._hasher.update(chunk)
            self._frontier += len(chunk)
        return self._frontier, self._hasher.hexdigest()


@dataclass
class _RunningHash:
    hasher: Any
    next_part: int = 1  # the next part to feed the hasher
    busy: bool = False  # a request is feeding the hasher part `next_part` (and any parked successors)
    size: int = 0
    etags: dict[int, str] = field(default_factory=dict)
    parked: dict[int, tuple[bytes | bytearray, str]] = field(default_factory=dict)
    parked_bytes: int = 0
    broken: bool = False
    touched: float = 0.0  # when a part of this upload last arrived (the `InOrderHashes` clock)

    def give_up(self) -> None:
        self.broken = True
        self.parked.clear()
        self.parked_bytes = 0


class InOrderHashes:
    """The SHA-256 of uploads, computed from the parts this process receives through the API.

    Parts pass through memory anyway; hashing them then spares `complete` reading a multi-gigabyte object
    back from storage. A part that arrives before its predecessor is parked and hashed by the request that
    fills the gap. Parking is bounded (`max_parked_bytes` per upload): a part that does not fit waits, up to
    `max_wait_s`, for the gap to close. Holding its response is backpressure on the client (a stalled part
    otherwise lets the client's other connections run far ahead), and it costs far less than reading the
    whole object back. It is only a shortcut: a part sent twice, a gap that outlasts the wait, a part sent
    straight to S3, or parts spread over several API processes leave the hash unusable, and `complete`
    reads the object instead. The etags recorded here are checked against the parts S3 assembles, so the
    digest is always of the stored bytes.

    Memory stays bounded when clients vanish: parked parts count against `max_total_parked_bytes` across
    all uploads (an upload that would exceed it gives up), and an upload with no part for `max_idle_s` is
    forgotten with whatever it had parked.
    """

    def __init__(
        self,
        max_parked_bytes: int = 48 * MIB,
        max_wait_s: float = 30.0,
        *,
        max_total_parked_bytes: int = 256 * MIB,
        max_idle_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_parked_bytes = max_parked_bytes
        self._max_wait_s = max_wait_s
        self._max_total_parked_bytes = max_total_parked_bytes
        self._max_idle_s = max_idle_s
        self._clock = clock
        self._changed = threading.Condition()
        self._by_media: dict[str, _RunningHash] = {}

    @property
    def parked_bytes(self) -> int:
        """Bytes of parts held in memory, across all uploads."""
        with self._changed:
            return self._parked_total()

    def _parked_total(self) -> int:
        return sum(r.parked_bytes for r in self._by_media.values())

    def _forget_idle(self, now: float) -> None:
        idle = [m for m, r in self._by_media.items() if not r.busy and now - r.touched > self._max_idle_s]
        for media_id in idle:
            self._by_media.pop(media_id).give_up()
        if idle:
            self._changed.notify_all()

    def add(self, media_id: str, part_number: int, data: bytes | bytearray, etag: str) -> None:
        with self._changed:
            now = self._clock()
            self._forget_idle(now)
            running = self._by_media.setdefault(media_id, _RunningHash(hashlib.sha256()))
            running.touched = now
            deadline = time.monotonic() + self._max_wait_s
            while (
                not running.broken
                and part_number > running.next_part
                and running.parked_bytes + len(data) > self._max_parked_bytes
            ):
                if not self._changed.wait(deadline - time.monotonic()):
                    running.give_up()  # the gap outlasted the wait: `complete` will read the object
                    self._changed.notify_all()
            if running.broken:
                return
            sent_twice = part_number < running.next_part or part_number in running.parked
            if sent_twice or (part_number == running.next_part and running.busy):
                running.give_up()  # the stored part may now differ from what was hashed
                self._changed.notify_all()
                return
            if part_number > running.next_part or running.busy:
                if self._parked_total() + len(data) > self._max_total_parked_bytes:
                    running.give_up()  # the process holds enough parts already: `complete` will read the object
                    self._changed.notify_all()
                    return
                running.parked[part_number] = (data, etag)
                running.parked_bytes += len(data)
                return
            running.busy = True
        while True:  # only the busy holder feeds this hasher, so hashing needs no lock
            running.hasher.update(data)
            with self._changed:
                running.size += len(data)
                running.etags[part_number] = etag
                running.next_part = part_number = part_number + 1
                successor = running.parked.pop(part_number, None)
                if successor is not None:
                    running.parked_bytes -= len(successor[0])
                self._changed.notify_all()  # parked space freed or the gap moved: waiting parts re-check
                if successor is None or running.broken:
                    running.busy = False
                    return
                data, etag = successor

    def take(self, media_id: str, parts: list[UploadedPart]) -> tuple[int, str] | None:
        """(size, hex digest) if every stored part was hashed in order, else None; forgets the media."""
        with self._changed:
            running = self._by_media.pop(media_id, None)
            if running is None or running.broken or running.busy:
                return None
            if running.etags != {p.part_number: p.etag for p in parts}:
                return None
            return running.size, running.hasher.hexdigest()

    def forget(self, media_id: str) -> None:
        with self._changed:
            self._by_media.pop(media_id, None)


def _session_deleted() -> IngestError:
    return IngestError(410, "session_deleted", "this session was deleted; register a new one")


def part_size_for(size: int, preferred: int) -> int:
    """The preferred part size, grown in whole MiB when a file would need more than 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(preferred, -(-needed // MIB) * MIB)


def _request_digest(request: SessionCreate) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


class Uploads:
    """Stateless service over a database session factory and an object store; safe to share across threads."""

    def __init__(
        self,
        db: Callable[[], AbstractContextManager[Session]],
        store: ObjectStore,
        limits: UploadLimits,
        job_max_attempts: int = 3,
    ) -> None:
        self._db = db
        self._store = store
        self._limits = limits
        self._job_max_attempts = job_max_attempts  # the processing job that a completed upload queues
        self._hashes = InOrderHashes()

    # -- register ---------------------------------------------------------------------------------------
    def register(self, tenant_id: str, request: SessionCreate, idempotency_key: str | None) -> tuple[SessionOut, bool]:
        """Create a session and its multipart uploads; returns (session, created). Replays return the original."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise IngestError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
        for media in request.media:
            limit = self._limits.max_event_log_bytes if media.kind == "events" else self._limits.max_media_bytes
            if media.size_bytes > limit:
                raise IngestError(
                    413,
                    "media_too_large",
                    f"{media.kind} declares {media.size_bytes} bytes; the limit is {limit} bytes",
                    {"kind": media.kind, "limit_bytes": limit},
                )
        digest = _request_digest(request)
        if idempotency_key is not None:
            replay = self._replay(tenant_id, idempotency_key, digest)
            if replay is not None:
                return replay, False
        opened: list[tuple[str, str]] = []  # multipart uploads to abort if this registration does not commit
        try:
            with self._db() as db:
                session = self._create(db, tenant_id, request, opened)
                if idempotency_key is not None:
                    db.add(
                        IdempotencyKey(
                            tenant_id=tenant_id, key=idempotency_key, request_sha256=digest, session_id=session.id
                        )
                    )
                db.commit()
                out = self._out(db, session)
        except BaseException as exc:
            for key, upload_id in opened:
                self._store.abort_multipart(key, upload_id)
            if not isinstance(exc, IntegrityError):
                raise
            # A concurrent request with the same key (or the same attempt) committed first.
            if idempotency_key is not None:
                replay = self._replay(tenant_id, idempotency_key, digest)
                if replay is not None:
                    return replay, False
            raise self._attempt_conflict(tenant_id, request) from None
        log.info("session registered", extra={"session_id": out.id, "tenant_id": tenant_id, "exam": request.exam_id})
        return out, True

    def _replay(self, tenant_id: str, key: str, digest: str) -> SessionOut | None:
        with self._db() as db:
            row = db.get(IdempotencyKey, (tenant_id, key))
            if row is None:
                return None
            if row.request_sha256 != digest:
                raise IngestError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different request body; "
                    "use a new key for a new session",
                )
            return self._out(db, self._session(db, tenant_id, row.session_id))

    def _attempt_conflict(self, tenant_id: str, request: SessionCreate) -> IngestError:
        with self._db() as db:
            existing = db.scalar(
                select(ExamSession)
                .join(Exam, Exam.id == ExamSession.exam_id)
                .where(
                    Exam.tenant_id == tenant_id,
                    Exam.external_id == request.exam_id,
                    ExamSession.attempt_id == request.attempt_id,
                )
            )
        return IngestError(
            409,
            "attempt_already_registered",
            f"exam {request.exam_id!r} already has a session for attempt {request.attempt_id!r}; "
            "resume it, or send the same Idempotency-Key to get it back",
            {"session_id": existing.id if existing else None},
        )

    def _create(
        self, db: Session, tenant_id: str, request: SessionCreate, opened: list[tuple[str, str]]
    ) -> ExamSession:
        tenant = db.get(Tenant, tenant_id)
        if tenant is None:
            raise IngestError(401, "unauthorized", "unknown tenant")
        exam = db.scalar(select(Exam).where(Exam.tenant_id == tenant_id, Exam.external_id == request.exam_id))
        if exam is None:
            exam = Exam(tenant_id=tenant_id, external_id=request.exam_id, title=request.exam_title)
            db.add(exam)
            db.flush()
        session = ExamSession(
            tenant_id=tenant_id,
            exam_id=exam.id,
            candidate_id=request.candidate_id,
            attempt_id=request.attempt_id,
            started_at=request.started_at.astimezone(UTC),
        )
        db.add(session)
        db.flush()
        prefix = SessionPrefix(tenant.slug, exam.external_id, session.id)
        for declared in request.media:
            key = prefix.key("media", declared.kind)
            upload_id = self._store.create_multipart(key, content_type=declared.content_type)
            opened.append((key, upload_id))
            media = Media(
                session_id=session.id,
                kind=declared.kind,
                object_key=key,
                content_type=declared.content_type,
                declared_size=declared.size_bytes,
                declared_sha256=declared.sha256,
                part_size=part_size_for(declared.size_bytes, self._limits.part_size_bytes),
                upload_id=upload_id,
            )
            db.add(media)
        db.add(session.move_to(SessionState.UPLOADING))
        return session

    # -- parts ------------------------------------------------------------------------------------------
    def expected_part_size(self, tenant_id: str, session_id: str, kind: str, part_number: int) -> int:
        with self._db() as db:
            media = self._pending_media(db, tenant_id, session_id, kind)
            return self._expected_size(media, part_number)

    def _expected_size(self, media: Media, part_number: int) -> int:
        if not 1 <= part_number <= media.part_count:
            raise IngestError(
                422,
                "part_number_out_of_range",
                f"{media.kind} has parts 1..{media.part_count} of {media.part_size} bytes; got part {part_number}",
            )
        if part_number < media.part_count:
            return media.part_size
        return media.declared_size - media.part_size * (media.part_count - 1)

    def store_part(
        self,
        tenant_id: str,
        session_id: str,
        kind: str,
        part_number: int,
        data: bytes | bytearray,
        sha256_hex: str | None,
    ) -> PartOut:
        """Store one part received through the API; the bytes were already size-checked while streaming."""
        with self._db() as db:
            media = self._pending_media(db, tenant_id, session_id, kind)
            expected = self._expected_size(media, part_number)
            if len(data) != expected:
                raise IngestError(
                    422,
                    "part_size_invalid",
                    f"part {part_number} of {kind} must be {expected} bytes, got {len(data)}",
                    {"expected_bytes": expected, "received_bytes": len(data)},
                )
            digest = hashlib.sha256(data).hexdigest()
            if sha256_hex is not None and sha256_hex.lower() != digest:
                raise IngestError(
                    422,
                    "part_checksum_mismatch",
                    f"part {part_number} arrived with SHA-256 {digest}, not the {sha256_hex} the client sent; "
                    "the connection corrupted it: send the part again",
                )
            assert media.upload_id is not None
            try:
                etag = self._store.upload_part(media.object_key, media.upload_id, part_number, data, sha256=digest)
            except ObjectNotFound:
                raise IngestError(
                    409, "upload_expired", f"the upload of {kind} no longer exists in storage; register a new session"
                ) from None
            db.merge(UploadPart(media_id=media.id, part_number=part_number, size=len(data), etag=etag, sha256=digest))
            db.commit()
            media_id = media.id
        self._hashes.add(media_id, part_number, data, etag)
        return PartOut(part_number=part_number, size=len(data), etag=etag)

    def list_parts(self, tenant_id: str, session_id: str, kind: str) -> PartsOut:
        with self._db() as db:
            media = self._media(db, tenant_id, session_id, kind)
            if media.state in ("complete", "verifying"):
                received = [
                    PartOut(part_number=n, size=self._expected_size(media, n), etag="")
                    for n in range(1, media.part_count + 1)
                ]
            else:
                received = self._parts_in_storage(media)
            have = {p.part_number for p in received}
            return PartsOut(
                kind=kind,  # type: ignore[arg-type]
                part_size=media.part_size,
                part_count=media.part_count,
                received=received,
                missing=[n for n in range(1, media.part_count + 1) if n not in have],
            )

    def _parts_in_storage(self, media: Media) -> list[PartOut]:
        assert media.upload_id is not None
        try:
            parts = self._store.list_parts(media.object_key, media.upload_id)
        except ObjectNotFound:
            return []
        return [PartOut(part_number=p.part_number, size=p.size, etag=p.etag) for p in parts]

    def presign_parts(self, tenant_id: str, session_id: str, kind: str, part_numbers: list[int]) -> list[PresignedPart]:
        ttl = self._limits.presigned_url_ttl_s
        with self._db() as db:
            media = self._pending_media(db, tenant_id, session_id, kind)
            for number in part_numbers:
                self._expected_size(media, number)
            assert media.upload_id is not None
            expires = utcnow() + timedelta(seconds=ttl)
            return [
                PresignedPart(
                    part_number=n,
                    url=self._store.presigned_upload_part(media.object_key, media.upload_id, n, ttl),
                    expires_at=expires,
                )
                for n in part_numbers
            ]

    # -- complete ---------------------------------------------------------------------------------------
    def complete(self, tenant_id: str, session_id: str, kind: str) -> SessionOut:
        """Assemble, verify and validate one media file. Replaying it returns the same outcome."""
        with self._db() as db:
            media = self._media(db, tenant_id, session_id, kind)
            session = media.session
            if media.state == "complete":
                return self._out(db, session)
            if media.state == "rejected" or session.state == SessionState.REJECTED:
                raise IngestError(422, session.reason_code or "rejected", session.reason or "this session was rejected")
            if session.state == SessionState.DELETED:
                raise _session_deleted()
            media_id, key, upload_id = media.id, media.object_key, media.upload_id
            stale = (
                media.state == "verifying"
                and media.completed_at is not None
                and (media.completed_at < utcnow() - VERIFY_TAKEOVER)
            )
            if media.state == "verifying" and not stale:
                raise IngestError(
                    409, "complete_in_progress", f"{kind} is being verified by another request; retry in a few seconds"
                )
            self._check_parts(media)
            # Only one request verifies a media file at a time; a stale claim (crashed worker) is taken over.
            claimed = db.execute(  # type: ignore[attr-defined]  # an UPDATE's result has a rowcount
                update(Media)
                .where(
                    Media.id == media_id,
                    (Media.state == "pending")
                    | ((Media.state == "verifying") & (Media.completed_at < utcnow() - VERIFY_TAKEOVER)),
                )
                .values(state="verifying", completed_at=utcnow())
            ).rowcount
            db.commit()
            if claimed != 1:
                raise IngestError(
                    409, "complete_in_progress", f"{kind} is being verified by another request; retry in a few seconds"
                )
        assert upload_id is not None
        try:
            outcome = self._assemble_and_validate(media_id, key, upload_id, kind)
        except BaseException as exc:
            with self._db() as db:  # let the client retry after an unexpected failure
                db.execute(update(Media).where(Media.id == media_id).values(state="pending", completed_at=None))
                db.commit()
                erased = (
                    db.scalar(select(ExamSession.state).where(ExamSession.id == session_id)) == SessionState.DELETED
                )
            if erased:  # its objects went while this request read them
                raise _session_deleted() from exc
            raise
        with self._db() as db:
            media = self._media(db, tenant_id, session_id, kind)
            session = media.session
            if session.state == SessionState.DELETED:  # erased while this request verified it
                raise _session_deleted()
            if isinstance(outcome, MediaRejected):
                media.state = "rejected"
                db.add(session.move_to(SessionState.REJECTED, code=outcome.code, reason=outcome.message))
                db.commit()
                log.warning(
                    "media rejected",
                    extra={"session_id": session_id, "kind": kind, "code": outcome.code, "reason": outcome.message},
                )
                raise IngestError(422, outcome.code, outcome.message)
            media.state = "complete"
            media.probe = outcome
            media.completed_at = utcnow()
            if kind == "webcam":
                session.duration_s = float(outcome["duration_s"])
            db.flush()
            # Lock the session row, then count unfinished media afresh: two media completing at once (webcam and
            # screen uploaded in parallel) must not each see the other as unfinished and queue nothing. On
            # PostgreSQL the second waits here for the first to commit; SQLite runs one writer at a time anyway.
            db.refresh(session, with_for_update=True)
            unfinished = db.scalar(
                select(func.count()).select_from(Media).where(Media.session_id == session.id, Media.state != "complete")
            )
            if unfinished == 0:
                for target in (SessionState.UPLOADED, SessionState.VALIDATED, SessionState.QUEUED):
                    db.add(session.move_to(target))
                db.add(Job(session_id=session.id, kind="process", max_attempts=self._job_max_attempts))
            db.commit()
            log.info("media complete", extra={"session_id": session_id, "kind": kind, "state": session.state})
            return self._out(db, session)

    def _check_parts(self, media: Media) -> None:
        listed = self._parts_in_storage(media)
        if not listed and self._store.stat(media.object_key) is not None:
            # An earlier complete assembled the upload (S3 lists no parts once it has) and then failed or died
            # before recording it: the object is verified by size and SHA-256 like any other.
            return
        parts = {p.part_number: p for p in listed}
        missing = [n for n in range(1, media.part_count + 1) if n not in parts]
        if missing:
            shown = missing if len(missing) <= 20 else [*missing[:20], "..."]
            raise IngestError(
                409,
                "missing_parts",
                f"{media.kind} is missing {len(missing)} of {media.part_count} parts: upload them, then complete again",
                {"missing": shown},
            )
        wrong = {
            n: p.size for n, p in parts.items() if n <= media.part_count and p.size != self._expected_size(media, n)
        }
        if wrong:
            raise IngestError(
                409,
                "part_size_invalid",
                f"{media.kind} parts {sorted(wrong)} have the wrong size; parts are {media.part_size} bytes "
                "except the last: send those parts again",
                {"parts": {str(n): s for n, s in wrong.items()}},
            )

    def _assemble_and_validate(
        self, media_id: str, key: str, upload_id: str, kind: str
    ) -> dict[str, Any] | MediaRejected:
        with self._db() as db:
            media = db.get(Media, media_id)
            assert media is not None
            declared_size, declared_sha, count = media.declared_size, media.declared_sha256, media.part_count
        parts: list[UploadedPart] = []
        try:
            parts = [p for p in self._store.list_parts(key, upload_id) if p.part_number <= count]
            self._store.complete_multipart(key, upload_id, parts)
        except ObjectNotFound:
            # The upload was already assembled by an attempt that died before recording it.
            if self._store.stat(key) is None:
                raise IngestError(
                    409, "upload_expired", f"the upload of {kind} no longer exists; register again"
                ) from None
        except ObjectExists:
            pass  # same: assembled earlier, verified below like any other
        hashed = self._hashes.take(media_id, parts)
        if hashed is None:  # the whole object is read once, front to back: large blocks, no cache
            opened = self._store.open(key, block_bytes=8 * MIB, cached_blocks=1)
        else:
            opened = self._store.open(key)
        with opened as stored:
            reader: BinaryIO = stored
            hashing: HashingReader | None = None
            if hashed is None:  # one pass from storage: the probe reads while the reader hashes
                hashing = HashingReader(stored, stored.seek(0, io.SEEK_END))
                stored.seek(0)
                reader = io.BufferedReader(hashing)
            try:
                if kind == "events":
                    outcome: dict[str, Any] | MediaRejected = {"events_count": len(parse_event_log(reader))}
                else:
                    outcome = probe_video(reader, self._limits.probe).to_dict()
            except MediaRejected as rejected:
                outcome = rejected
            if hashing is not None:
                size, digest = hashing.finish()
            else:
                assert hashed is not None
                size, digest = hashed
        # A wrong checksum or size explains any content error, so it is reported first.
        if size != declared_size:
            return MediaRejected("size_mismatch", f"{kind} assembled to {size} bytes but {declared_size} were declared")
        if digest != declared_sha:
            return MediaRejected(
                "checksum_mismatch",
                f"{kind} has SHA-256 {digest} but {declared_sha} was declared: the file changed or was "
                "corrupted; register a new session with the right checksum",
            )
        return outcome

    # -- read, erase ------------------------------------------------------------------------------------
    def get(self, tenant_id: str, session_id: str) -> SessionOut:
        with self._db() as db:
            return self._out(db, self._session(db, tenant_id, session_id))

    def events(self, tenant_id: str, session_id: str) -> list[dict[str, Any]]:
        """The exam event log of a session, parsed, or [] when it has none."""
        with self._db() as db:
            session = self._session(db, tenant_id, session_id)
            media = next((m for m in session.media if m.kind == "events" and m.state == "complete"), None)
            if media is None:
                return []
            key = media.object_key
        raw = b"".join(self._store.iter_chunks(key))
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def delete(
        self,
        tenant_id: str,
        session_id: str,
        *,
        erased_by: str | None = None,
        code: str = "erased",
        reason: str = "recordings erased on request",
    ) -> SessionOut:
        """Erase every stored object of the session (and unfinished uploads); keep the row, marked deleted.

        The erasure goes into the audit trail, by ``erased_by`` (default: the tenant's API, ``api:<slug>``).
        """
        with self._db() as db:
            session = self._session(db, tenant_id, session_id)
            if session.state == SessionState.DELETED:
                return self._out(db, session)
            prefix = SessionPrefix(session.tenant.slug, session.exam.external_id, session.id).prefix
            # Fail the session's jobs before deleting anything. The UPDATE holds their rows (PostgreSQL) or the
            # write lock (SQLite) until this commits, so a worker publishing results meanwhile either committed
            # first (its objects are already there to delete) or waits, then fails its lease check and deletes
            # what it wrote: no evidence frame or signal outlives the erasure.
            db.execute(
                update(Job)
                .where(Job.session_id == session.id, Job.state.in_(("queued", "running")))
                .values(state="failed", last_error="session deleted", updated_at=utcnow())
            )
            for media in session.media:
                if media.upload_id is not None:
                    # Explicitly: MinIO lists unfinished uploads only by exact key, not by prefix (minio#11686).
                    self._store.abort_multipart(media.object_key, media.upload_id)
            removed = self._store.delete_prefix(prefix)
            db.add(session.move_to(SessionState.DELETED, code=code, reason=reason))
            session.deleted_at = utcnow()
            audit.record(
                db,
                erased_by or f"api:{session.tenant.slug}",
                "erase",
                at=session.deleted_at,
                tenant_id=session.tenant_id,
                session_id=session.id,
                code=code,
                reason=reason,
                objects_removed=removed,
            )
            for media in session.media:
                media.upload_id = None
                self._hashes.forget(media.id)
            db.commit()
            log.info("session erased", extra={"session_id": session_id, "code": code, "objects_removed": removed})
            return self._out(db, session)

    # -- lookups ------------------------------------------------------------------------------------------
    def _session(self, db: Session, tenant_id: str, session_id: str) -> ExamSession:
        session = db.get(ExamSession, session_id)
        if session is None or session.tenant_id != tenant_id:
            # Another tenant's session is indistinguishable from a missing one.
            raise IngestError(404, "session_not_found", f"no session {session_id!r} for this API key")
        return session

    def _media(self, db: Session, tenant_id: str, session_id: str, kind: str) -> Media:
        session = self._session(db, tenant_id, session_id)
        media = next((m for m in session.media if m.kind == kind), None)
        if media is None:
            declared = sorted(m.kind for m in session.media)
            raise IngestError(404, "media_not_declared", f"session {session_id} declared {declared}, not {kind!r}")
        return media

    def _pending_media(self, db: Session, tenant_id: str, session_id: str, kind: str) -> Media:
        media = self._media(db, tenant_id, session_id, kind)
        if media.session.state in (SessionState.REJECTED, SessionState.DELETED):
            raise IngestError(
                409, "session_closed", f"session {session_id} is {media.session.state}; it takes no more uploads"
            )
        if media.state != "pending":
            raise IngestError(409, "media_already_complete", f"{kind} is {media.state}; it takes no more parts")
        return media

    def _out(self, db: Session, session: ExamSession) -> SessionOut:
        reason = ReasonOut(code=session.reason_code, message=session.reason or "") if session.reason_code else None
        return SessionOut(
            id=session.id,
            exam_id=session.exam.external_id,
            candidate_id=session.candidate_id,
            attempt_id=session.attempt_id,
            started_at=session.started_at,
            state=session.state,
            reason=reason,
            duration_s=session.duration_s,
            created_at=session.created_at,
            updated_at=session.updated_at,
            media=[
                MediaOut(
                    kind=m.kind,  # type: ignore[arg-type]
                    state=m.state,  # type: ignore[arg-type]
                    size_bytes=m.declared_size,
                    sha256=m.declared_sha256,
                    content_type=m.content_type,
                    part_size=m.part_size,
                    part_count=m.part_count,
                    probe=ProbeOut(**m.probe) if m.probe and m.kind != "events" else None,
                    events_count=m.probe.get("events_count") if m.probe and m.kind == "events" else None,
                )
                for m in session.media
            ],
        )
