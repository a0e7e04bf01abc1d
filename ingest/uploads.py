"""The upload protocol: register a session, receive parts, complete and validate, read back, erase.

Each media file is one S3 multipart upload, created when the session is registered. Parts arrive through
the API (streamed, checksummed, one part in memory at most) or straight to S3 through presigned part URLs;
S3's own part list is the truth for what arrived, so a client can resume from any broken connection with
either path. `complete` assembles the parts, then reads the object back once to check size and SHA-256 and
to probe it, and either accepts the media or rejects the session with a machine-readable reason. Nothing is
deleted on rejection: the stored bytes stay for inspection until the session is erased.

Enrolment media (a candidate's reference photo or clip, `ingest.enrolment`) take the same path but are stored
under the candidate and judged alone: a refused one is rejected without the session, and the session is
queued as soon as its recordings (webcam, screen, events) are complete, whatever its enrolment's state.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import utcnow
from core.enrolments import CandidatePrefix
from core.erasure import erase_session
from core.jobs import queue_job
from core.probes import VideoProbe
from core.states import SessionState
from core.tables import Exam, ExamSession, IdempotencyKey, Media, Tenant, UploadPart
from core.vocabulary import ENROLMENT_KINDS, RECORDING_KINDS, MediaKind, MediaState
from ingest.enrolment import AcceptedEnrolment, EnrolmentChecks, keep_enrolment
from ingest.event_log import parse_event_log
from ingest.hashing import MIB, HashingReader, InOrderHashes
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from ingest.records import (
    check_parts,
    declared_media,
    expected_part_size,
    parts_in_storage,
    pending_media,
    session_deleted,
    session_out,
    tenant_session,
)
from ingest.schemas import (
    IngestError,
    PartOut,
    PartsOut,
    PresignedPart,
    SessionCreate,
    SessionOut,
)
from storage.keys import SessionPrefix
from storage.object_store import ObjectExists, ObjectNotFound, ObjectStore, UploadedPart

log = logging.getLogger(__name__)

MAX_PARTS = 10_000
VERIFY_TAKEOVER = timedelta(minutes=15)


@dataclass(frozen=True)
class UploadLimits:
    part_size_bytes: int
    max_media_bytes: int
    max_event_log_bytes: int
    presigned_url_ttl_s: int
    probe: ProbeLimits


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
        enrolments: EnrolmentChecks | None = None,
    ) -> None:
        self._db = db
        self._store = store
        self._limits = limits
        self._enrolments = enrolments  # None: this service refuses enrolment media
        self._job_max_attempts = job_max_attempts  # the processing job that a completed upload queues
        self._hashes = InOrderHashes()

    # -- register ---------------------------------------------------------------------------------------
    def register(self, tenant_id: str, request: SessionCreate, idempotency_key: str | None) -> tuple[SessionOut, bool]:
        """Create a session and its multipart uploads; returns (session, created). Replays return the original."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise IngestError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
        for media in request.media:
            limit = self._limits.max_event_log_bytes if media.kind == MediaKind.EVENTS else self._limits.max_media_bytes
            if media.kind in ENROLMENT_KINDS:
                limit = self._enrolment_checks().limits.max_bytes(media.kind)
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

    def _enrolment_checks(self) -> EnrolmentChecks:
        if self._enrolments is None:
            raise IngestError(422, "enrolment_unavailable", "this server does not take enrolment media: leave them out")
        return self._enrolments

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
        candidate = CandidatePrefix(tenant.slug, request.candidate_id)
        for declared in request.media:
            if declared.kind in ENROLMENT_KINDS:  # the candidate's, kept beyond this session
                key = candidate.enrolment_key(session.id, declared.kind)
            else:
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
            media = pending_media(db, tenant_id, session_id, kind)
            return expected_part_size(media, part_number)

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
            media = pending_media(db, tenant_id, session_id, kind)
            expected = expected_part_size(media, part_number)
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
            media = declared_media(db, tenant_id, session_id, kind)
            if media.state in (MediaState.COMPLETE, MediaState.VERIFYING):
                received = [
                    PartOut(part_number=n, size=expected_part_size(media, n), etag="")
                    for n in range(1, media.part_count + 1)
                ]
            else:
                received = parts_in_storage(self._store, media)
            have = {p.part_number for p in received}
            return PartsOut(
                kind=kind,  # type: ignore[arg-type]
                part_size=media.part_size,
                part_count=media.part_count,
                received=received,
                missing=[n for n in range(1, media.part_count + 1) if n not in have],
            )

    def presign_parts(self, tenant_id: str, session_id: str, kind: str, part_numbers: list[int]) -> list[PresignedPart]:
        ttl = self._limits.presigned_url_ttl_s
        with self._db() as db:
            media = pending_media(db, tenant_id, session_id, kind)
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
    def complete(self, tenant_id: str, session_id: str, kind: str) -> SessionOut:
        """Assemble, verify and validate one media file. Replaying it returns the same outcome."""
        with self._db() as db:
            media = declared_media(db, tenant_id, session_id, kind)
            session = media.session
            if media.state == MediaState.COMPLETE:
                return session_out(session)
            if media.state == MediaState.REJECTED and media.reason_code:
                raise IngestError(422, media.reason_code, media.reason or f"{kind} was rejected")
            if media.state == MediaState.REJECTED or session.state == SessionState.REJECTED:
                raise IngestError(422, session.reason_code or "rejected", session.reason or "this session was rejected")
            if session.state == SessionState.DELETED:
                raise session_deleted()
            media_id, key, upload_id = media.id, media.object_key, media.upload_id
            stale = (
                media.state == MediaState.VERIFYING
                and media.completed_at is not None
                and (media.completed_at < utcnow() - VERIFY_TAKEOVER)
            )
            if media.state == MediaState.VERIFYING and not stale:
                raise IngestError(
                    409, "complete_in_progress", f"{kind} is being verified by another request; retry in a few seconds"
                )
            check_parts(self._store, media)
            # Only one request verifies a media file at a time; a stale claim (crashed worker) is taken over.
            claimed = db.execute(  # type: ignore[attr-defined]  # an UPDATE's result has a rowcount
                update(Media)
                .where(
                    Media.id == media_id,
                    (Media.state == MediaState.PENDING.value)
                    | ((Media.state == MediaState.VERIFYING.value) & (Media.completed_at < utcnow() - VERIFY_TAKEOVER)),
                )
                .values(state=MediaState.VERIFYING.value, completed_at=utcnow())
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
                db.execute(
                    update(Media).where(Media.id == media_id).values(state=MediaState.PENDING.value, completed_at=None)
                )
                db.commit()
                erased = (
                    db.scalar(select(ExamSession.state).where(ExamSession.id == session_id)) == SessionState.DELETED
                )
            if erased:  # its objects went while this request read them
                raise session_deleted() from exc
            raise
        with self._db() as db:
            media = declared_media(db, tenant_id, session_id, kind)
            session = media.session
            if session.state == SessionState.DELETED:  # erased while this request verified it
                raise session_deleted()
            if isinstance(outcome, MediaRejected):
                media.state = MediaState.REJECTED.value
                media.reason_code, media.reason = outcome.code, outcome.message
                if kind not in ENROLMENT_KINDS:  # a refused enrolment leaves the recording as valid as it was
                    db.add(session.move_to(SessionState.REJECTED, code=outcome.code, reason=outcome.message))
                db.commit()
                log.warning(
                    "media rejected",
                    extra={"session_id": session_id, "kind": kind, "code": outcome.code, "reason": outcome.message},
                )
                raise IngestError(422, outcome.code, outcome.message, {"kind": kind})
            media.state = MediaState.COMPLETE.value
            media.completed_at = utcnow()
            if isinstance(outcome, AcceptedEnrolment):
                keep_enrolment(db, session, media, outcome)
                return session_out(session)
            media.probe = outcome if isinstance(outcome, dict) else outcome.to_dict()
            if isinstance(outcome, VideoProbe) and kind == MediaKind.WEBCAM:
                session.duration_s = outcome.duration_s
            db.flush()
            # Lock the session row, then count unfinished media afresh: two media completing at once (webcam and
            # screen uploaded in parallel) must not each see the other as unfinished and queue nothing. On
            # PostgreSQL the second waits here for the first to commit; SQLite runs one writer at a time anyway.
            db.refresh(session, with_for_update=True)
            unfinished = db.scalar(
                select(func.count())
                .select_from(Media)
                .where(
                    Media.session_id == session.id,
                    Media.state != MediaState.COMPLETE.value,
                    Media.kind.in_([k.value for k in RECORDING_KINDS]),
                )
            )
            if unfinished == 0:
                for target in (SessionState.UPLOADED, SessionState.VALIDATED):
                    db.add(session.move_to(target))
                queue_job(db, session, max_attempts=self._job_max_attempts)
            db.commit()
            log.info("media complete", extra={"session_id": session_id, "kind": kind, "state": session.state})
            return session_out(session)

    def _assemble_and_validate(
        self, media_id: str, key: str, upload_id: str, kind: str
    ) -> VideoProbe | dict[str, int] | AcceptedEnrolment | MediaRejected:
        """The video's probe, the event log's `{"events_count": n}`, a checked enrolment, or why the media is
        rejected."""
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
                if kind == MediaKind.EVENTS:
                    outcome: VideoProbe | dict[str, int] | bytes | MediaRejected = {
                        "events_count": len(parse_event_log(reader))
                    }
                elif kind in ENROLMENT_KINDS:
                    outcome = self._enrolment_checks().first_pass(kind, reader, self._limits.probe)
                else:
                    outcome = probe_video(reader, self._limits.probe)
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
        if isinstance(outcome, bytes | VideoProbe) and kind in ENROLMENT_KINDS:
            try:  # only a verified file is decoded and checked
                return self._enrolment_checks().check(outcome, lambda: self._store.open(key))
            except MediaRejected as rejected:
                return rejected
        assert not isinstance(outcome, bytes)
        return outcome

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
            db.commit()
            log.info("session erased", extra={"session_id": session_id, "code": code, "objects_removed": removed})
            return session_out(session)
