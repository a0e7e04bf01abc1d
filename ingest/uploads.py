"""The upload protocol: register a session, receive parts, complete and validate, read back, erase.

Each media file is one S3 multipart upload, created when the session is registered. Parts arrive through
the API (streamed, checksummed, one part in memory at most) or straight to S3 through presigned part URLs;
S3's own part list is the truth for what arrived, so a client can resume from any broken connection with
either path. `complete` (`ingest.completion`) assembles the parts, then reads the object back once to check
size and SHA-256 and to probe it, and either accepts the media or rejects the session with a machine-readable
reason.

A file is declared with its size and SHA-256, or `streaming` (`ingest.streaming`): uploaded while it is recorded,
in checksummed parts through the API only, its size and SHA-256 sent at complete. A browser that uploads holds
not the tenant's API key but an upload token for the one session (`ingest.upload_tokens`).

Enrolment media (a candidate's reference photo or clip, `ingest.enrolment`) take the same path but are stored
under the candidate and judged alone: a refused one is rejected without the session, and the session is
queued as soon as its recordings (webcam, screen, events) are complete, whatever its enrolment's state. One may
also be added to a session still uploading (`add_media`, `ingest.opening`): a browser recorder has the photo only
after its camera check.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import utcnow
from core.erasure import erase_session
from core.states import SessionState
from core.tables import Exam, ExamSession, IdempotencyKey, Media, UploadPart, UploadToken
from core.tenants import count_open_sessions, lock_tenant
from core.vocabulary import ENROLMENT_KINDS, MediaKind, MediaState
from ingest.completion import Completion, required_enrolment_checks
from ingest.enrolment import EnrolmentChecks
from ingest.hashing import MIB, InOrderHashes
from ingest.opening import check_addable, existing_or_addable, open_media
from ingest.probe import ProbeLimits
from ingest.quotas import Demand, QuotaLimits, admit, admit_part
from ingest.records import (
    declared_media,
    expected_part_size,
    parts_in_storage,
    pending_media,
    session_deleted,
    session_out,
    tenant_session,
)
from ingest.schemas import (
    CompleteRequest,
    IngestError,
    MediaDeclaration,
    PartOut,
    PartsOut,
    PresignedPart,
    SessionCreate,
    SessionOut,
    UploadTokenOut,
)
from ingest.streaming import MAX_PARTS, check_streaming_part, missing_below_highest, part_checksum_required
from ingest.upload_tokens import issue_upload_token, upload_token_tenant
from storage.object_store import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

UPLOAD_TOKEN_TTL_S = 4 * 3600


@dataclass(frozen=True)
class UploadLimits:
    part_size_bytes: int
    max_media_bytes: int
    max_event_log_bytes: int
    presigned_url_ttl_s: int
    probe: ProbeLimits
    quotas: QuotaLimits  # each tenant's defaults
    upload_token_ttl_s: int = UPLOAD_TOKEN_TTL_S  # an upload token's longest life, and its default


@dataclass(frozen=True)
class PartSpec:
    """What one part upload's body must be: exactly `size` bytes, or for a streaming file 1 to `size` bytes sent
    with its SHA-256."""

    size: int
    streaming: bool

    def allows(self, size: int) -> bool:
        return 1 <= size <= self.size if self.streaming else size == self.size

    @property
    def described(self) -> str:
        return f"1 to {self.size} bytes" if self.streaming else f"{self.size} bytes"


def part_size_for(size: int, preferred: int) -> int:
    """The preferred part size, grown in whole MiB when a file would need more than 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(preferred, -(-needed // MIB) * MIB)


def _request_digest(request: SessionCreate) -> str:
    # `streaming` is left out of declared media's entries: a registration replayed across the release that
    # added it digests as it did when its Idempotency-Key was stored.
    exclude = {"media": {i: {"streaming"} for i, m in enumerate(request.media) if not m.streaming}}
    return hashlib.sha256(request.model_dump_json(exclude=exclude, exclude_none=True).encode()).hexdigest()


def _checksum_mismatch(part_number: int, digest: str, sent: str) -> IngestError:
    return IngestError(
        422,
        "part_checksum_mismatch",
        f"part {part_number} arrived with SHA-256 {digest}, not the {sent} the client sent; "
        "the connection corrupted it: send the part again",
    )


class Uploads:
    """Stateless service over a database session factory and an object store; safe to share across threads."""

    def __init__(
        self,
        db: Callable[[], AbstractContextManager[Session]],
        store: ObjectStore,
        limits: UploadLimits,
        job_max_attempts: int = 3,
        enrolments: EnrolmentChecks | None = None,
    ) -> None:
        self._db = db
        self._store = store
        self._limits = limits
        self._enrolments = enrolments  # None: this service refuses enrolment media
        self._hashes = InOrderHashes()
        # the processing job that a completed upload queues takes `job_max_attempts`
        self._completion = Completion(db, store, self._hashes, limits.probe, job_max_attempts, enrolments)

    def _limit_bytes(self, kind: str) -> int:
        if kind in ENROLMENT_KINDS:
            return required_enrolment_checks(self._enrolments).limits.max_bytes(kind)
        return self._limits.max_event_log_bytes if kind == MediaKind.EVENTS else self._limits.max_media_bytes

    def _check_size(self, declared: MediaDeclaration) -> None:
        """Refuse (413 `media_too_large`) a file declared larger than its kind's limit."""
        limit = self._limit_bytes(declared.kind)
        if declared.size_bytes is not None and declared.size_bytes > limit:
            raise IngestError(
                413,
                "media_too_large",
                f"{declared.kind} declares {declared.size_bytes} bytes; the limit is {limit} bytes",
                {"kind": declared.kind, "limit_bytes": limit},
            )

    def _part_size(self, declared: MediaDeclaration) -> int:
        # A streaming file's parts are sized for the largest file the limits take.
        sized_for = self._limit_bytes(declared.kind) if declared.size_bytes is None else declared.size_bytes
        return part_size_for(sized_for, self._limits.part_size_bytes)

    # -- register ---------------------------------------------------------------------------------------
    def register(self, tenant_id: str, request: SessionCreate, idempotency_key: str | None) -> tuple[SessionOut, bool]:
        """Create a session and its multipart uploads; returns (session, created). Replays return the original."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise IngestError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
        for media in request.media:
            self._check_size(media)
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
                out = session_out(session)
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
            return session_out(tenant_session(db, tenant_id, row.session_id))

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
        tenant = lock_tenant(db, tenant_id)  # a tenant's registrations take turns: none shares a quota's last slot
        if tenant is None:
            raise IngestError(401, "unauthorized", "unknown tenant")
        open_sessions = count_open_sessions(db, tenant_id)  # before this one
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
        db.flush()  # a repeat of this attempt fails here, and is answered as one (replay or 409) before any quota
        # a streaming file's size is unknown: it needs room for its first part
        added = sum(m.size_bytes or self._part_size(m) for m in request.media)
        admit(db, tenant, self._limits.quotas, Demand(sessions=1, bytes=added), open_sessions)
        for declared in request.media:
            open_media(db, self._store, session, declared, self._part_size(declared), opened)
        db.add(session.move_to(SessionState.UPLOADING))
        return session

    # -- enrolment added later --------------------------------------------------------------------------
    def add_media(self, tenant_id: str, session_id: str, declared: MediaDeclaration) -> tuple[SessionOut, bool]:
        """Add one enrolment file to a session still uploading (`ingest.opening`); returns (session, added).

        The same declaration sent again returns the session (added False); its parts and complete then go as for
        a file declared at registration."""
        check_addable(declared)
        required_enrolment_checks(self._enrolments)
        self._check_size(declared)
        opened: list[tuple[str, str]] = []  # the multipart upload to abort if the row does not commit
        try:
            with self._db() as db:
                lock_tenant(db, tenant_id)  # quotas are checked under it; always taken before a session's
                session = tenant_session(db, tenant_id, session_id)
                db.refresh(session, with_for_update=True)  # a completion queuing the session went first, or waits
                if existing_or_addable(session, declared) is not None:
                    return session_out(session), False
                # an enrolment file is declared with its size
                admit(db, session.tenant, self._limits.quotas, Demand(bytes=declared.size_bytes or 0))
                open_media(db, self._store, session, declared, self._part_size(declared), opened)
                db.commit()
        except BaseException as exc:
            for key, upload_id in opened:
                self._store.abort_multipart(key, upload_id)
            if not isinstance(exc, IntegrityError):
                raise
            # A concurrent request added this kind first: the same declaration is a repeat, another one refused.
            with self._db() as db:
                session = tenant_session(db, tenant_id, session_id)
                if existing_or_addable(session, declared) is None:
                    raise
                return session_out(session), False
        log.info(
            "enrolment media added", extra={"session_id": session_id, "tenant_id": tenant_id, "kind": declared.kind}
        )
        return self.get(tenant_id, session_id), True

    # -- parts ------------------------------------------------------------------------------------------
    def part_spec(self, tenant_id: str, session_id: str, kind: str, part_number: int) -> PartSpec:
        """What the body of part `part_number` must be, checked before a byte of it is read."""
        with self._db() as db:
            media = pending_media(db, tenant_id, session_id, kind)
            if media.streaming:
                check_streaming_part(media, part_number, None, self._limit_bytes(kind))
                return PartSpec(media.part_size, streaming=True)
            return PartSpec(expected_part_size(media, part_number), streaming=False)

    def store_part(
        self,
        tenant_id: str,
        session_id: str,
        kind: str,
        part_number: int,
        data: bytes | bytearray,
        sha256_hex: str | None,
    ) -> PartOut:
        """Store one part received through the API; the bytes were already size-checked while streaming.

        A streaming file's part needs `sha256_hex`; its number is bound to the bytes it first arrived with:
        the same bytes again are answered as stored, others refused (409 `part_conflict`)."""
        digest = hashlib.sha256(data).hexdigest()
        if sha256_hex is not None and sha256_hex.lower() != digest:
            raise _checksum_mismatch(part_number, digest, sha256_hex)
        with self._db() as db:
            media = pending_media(db, tenant_id, session_id, kind)
            if media.streaming:
                if sha256_hex is None:
                    raise part_checksum_required(kind, part_number)
                check_streaming_part(media, part_number, len(data), self._limit_bytes(kind))
                admit_part(db, media, part_number, len(data), self._limits.quotas)
                stored = self._claim_streaming_part(db, media, part_number, len(data), digest)
                if stored is not None:
                    return stored
            else:
                expected = expected_part_size(media, part_number)
                if len(data) != expected:
                    raise IngestError(
                        422,
                        "part_size_invalid",
                        f"part {part_number} of {kind} must be {expected} bytes, got {len(data)}",
                        {"expected_bytes": expected, "received_bytes": len(data)},
                    )
            media_id, key, upload_id, streaming = media.id, media.object_key, media.upload_id, media.streaming
            assert upload_id is not None
            try:
                etag = self._store.upload_part(key, upload_id, part_number, data, sha256=digest)
            except ObjectNotFound:
                raise IngestError(
                    409, "upload_expired", f"the upload of {kind} no longer exists in storage; register a new session"
                ) from None
            if streaming:  # the claim's bytes are now stored
                db.execute(
                    update(UploadPart)
                    .where(UploadPart.media_id == media_id, UploadPart.part_number == part_number)
                    .values(etag=etag, received_at=utcnow())
                )
            else:
                db.merge(
                    UploadPart(media_id=media_id, part_number=part_number, size=len(data), etag=etag, sha256=digest)
                )
            db.commit()
        self._hashes.add(media_id, part_number, data, etag)
        return PartOut(part_number=part_number, size=len(data), etag=etag)

    def _claim_streaming_part(
        self, db: Session, media: Media, part_number: int, size: int, digest: str
    ) -> PartOut | None:
        """Bind the part number to these bytes (committed before they go to storage, so that other bytes under the
        same number are refused, never stored); the part as stored if these bytes already are, else None."""
        for _ in range(2):  # a concurrent request may claim the number between the read and the insert
            claim = db.get(UploadPart, (media.id, part_number))
            if claim is not None and claim.sha256 != digest:
                raise IngestError(
                    409,
                    "part_conflict",
                    f"part {part_number} of {media.kind} was already sent with other bytes (SHA-256 {claim.sha256}); "
                    "a stored part is never replaced: send the next part",
                    {"part_number": part_number, "sha256": claim.sha256},
                )
            if claim is not None:  # the same bytes: stored (etag set), or a request storing them died midway
                return PartOut(part_number=part_number, size=claim.size, etag=claim.etag) if claim.etag else None
            db.add(UploadPart(media_id=media.id, part_number=part_number, size=size, etag="", sha256=digest))
            try:
                db.commit()
                return None
            except IntegrityError:
                db.rollback()
        raise IngestError(409, "part_conflict", f"part {part_number} of {media.kind} is being sent by another request")

    def list_parts(self, tenant_id: str, session_id: str, kind: str) -> PartsOut:
        with self._db() as db:
            media = declared_media(db, tenant_id, session_id, kind)
            count = media.part_count
            if media.state in (MediaState.COMPLETE, MediaState.VERIFYING) and count is not None:
                received = [
                    PartOut(part_number=n, size=expected_part_size(media, n), etag="") for n in range(1, count + 1)
                ]
            else:
                received = parts_in_storage(self._store, media)
            have = {p.part_number for p in received}
            if media.streaming and media.state != MediaState.COMPLETE:
                count, missing = None, missing_below_highest(have)
            else:
                assert count is not None  # a declared file's size is known from registration
                missing = [n for n in range(1, count + 1) if n not in have]
            return PartsOut(
                kind=kind,  # type: ignore[arg-type]
                part_size=media.part_size,
                part_count=count,
                received=received,
                missing=missing,
            )

    def presign_parts(self, tenant_id: str, session_id: str, kind: str, part_numbers: list[int]) -> list[PresignedPart]:
        ttl = self._limits.presigned_url_ttl_s
        with self._db() as db:
            media = pending_media(db, tenant_id, session_id, kind)
            if media.streaming:
                raise IngestError(
                    422,
                    "presign_unavailable",
                    f"{kind} is uploaded while recorded: its parts go through the API only, each with its SHA-256 "
                    "(PUT .../parts/{n} with X-Part-SHA256)",
                )
            for number in part_numbers:
                expected_part_size(media, number)
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
    def complete(self, tenant_id: str, session_id: str, kind: str, final: CompleteRequest | None = None) -> SessionOut:
        """Assemble, verify and validate one media file (`final`: its size and SHA-256, required for a streaming
        file). Replaying it returns the same outcome."""
        return self._completion.complete(tenant_id, session_id, kind, final)

    # -- upload tokens ----------------------------------------------------------------------------------
    def issue_upload_token(self, tenant_id: str, session_id: str, ttl_s: int | None = None) -> UploadTokenOut:
        """A token that opens this session's uploads (and nothing else) for `ttl_s` seconds, at most (and by
        default) the server's `upload_token_ttl_s`: what a platform hands the candidate's browser."""
        if ttl_s is not None and ttl_s < 1:
            raise IngestError(422, "validation_error", f"ttl_s must be at least 1 second, got {ttl_s}")
        ttl = min(ttl_s or self._limits.upload_token_ttl_s, self._limits.upload_token_ttl_s)
        with self._db() as db:
            session = tenant_session(db, tenant_id, session_id)
            if session.state == SessionState.DELETED:
                raise session_deleted()
            token = issue_upload_token(db, session, ttl, utcnow())
            db.commit()
        log.info("upload token issued", extra={"session_id": session_id, "tenant_id": tenant_id, "ttl_s": ttl})
        return token

    def upload_token_tenant(self, token: str, session_id: str) -> str:
        """The tenant of session `session_id` if `token` opens it; raises the refusal (401, 403) otherwise."""
        with self._db() as db:
            return upload_token_tenant(db, token, session_id, utcnow())

    # -- read, erase ------------------------------------------------------------------------------------
    def get(self, tenant_id: str, session_id: str) -> SessionOut:
        with self._db() as db:
            return session_out(tenant_session(db, tenant_id, session_id))

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
            session = tenant_session(db, tenant_id, session_id)
            if session.state == SessionState.DELETED:
                return session_out(session)
            removed = erase_session(
                db, self._store, session, erased_by=erased_by or f"api:{session.tenant.slug}", code=code, reason=reason
            )
            for media in session.media:
                self._hashes.forget(media.id)
            db.execute(delete(UploadToken).where(UploadToken.session_id == session.id))
            db.commit()
            log.info("session erased", extra={"session_id": session_id, "code": code, "objects_removed": removed})
            return session_out(session)
