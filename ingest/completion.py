"""Completing one media file: check the parts, assemble them, verify size and SHA-256, probe, and record.

`complete` claims the media (one request verifies a file at a time; a claim left by a crashed request is
taken over after `VERIFY_TAKEOVER`), assembles S3's parts, reads the object back once to hash and probe it (or
not at all when the parts were hashed in order as they arrived), and either accepts the media, queuing the
session once its recordings are all complete, or rejects it with a machine-readable reason. Nothing is
deleted on rejection: the stored bytes stay for inspection until the session is erased.

A streaming file (uploaded while recorded) learns its size and SHA-256 here, from the client's `CompleteRequest`:
its parts must run 1..n without a gap, all of `part_size` bytes but the last, and add up to that size; from then
on it is verified exactly as strictly as a declared file.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.jobs import queue_job
from core.probes import VideoProbe
from core.states import SessionState
from core.tables import ExamSession, Media
from core.vocabulary import ENROLMENT_KINDS, RECORDING_KINDS, MediaKind, MediaState
from ingest.enrolment import AcceptedEnrolment, EnrolmentChecks, keep_enrolment
from ingest.event_log import parse_event_log
from ingest.hashing import MIB, HashingReader, InOrderHashes
from ingest.probe import MediaRejected, ProbeLimits, probe_video
from ingest.records import check_parts, declared_media, parts_in_storage, session_deleted, session_out
from ingest.schemas import CompleteRequest, IngestError, SessionOut
from ingest.streaming import check_final_declaration, check_streaming_parts
from storage.object_store import ObjectExists, ObjectNotFound, ObjectStore, UploadedPart

log = logging.getLogger(__name__)

VERIFY_TAKEOVER = timedelta(minutes=15)
Outcome = VideoProbe | dict[str, int] | AcceptedEnrolment | MediaRejected


def required_enrolment_checks(enrolments: EnrolmentChecks | None) -> EnrolmentChecks:
    """The enrolment checks, or the refusal of a server built without them."""
    if enrolments is None:
        raise IngestError(422, "enrolment_unavailable", "this server does not take enrolment media: leave them out")
    return enrolments


def _in_progress(kind: str) -> IngestError:
    return IngestError(
        409, "complete_in_progress", f"{kind} is being verified by another request; retry in a few seconds"
    )


class Completion:
    """`Uploads.complete`, over the same database, store, in-order hashes and limits."""

    def __init__(
        self,
        db: Callable[[], AbstractContextManager[Session]],
        store: ObjectStore,
        hashes: InOrderHashes,
        probe_limits: ProbeLimits,
        job_max_attempts: int,
        enrolments: EnrolmentChecks | None,
    ) -> None:
        self._db = db
        self._store = store
        self._hashes = hashes
        self._probe_limits = probe_limits
        self._job_max_attempts = job_max_attempts
        self._enrolments = enrolments

    def complete(self, tenant_id: str, session_id: str, kind: str, final: CompleteRequest | None) -> SessionOut:
        """Assemble, verify and validate one media file. Replaying it returns the same outcome."""
        with self._db() as db:
            media = declared_media(db, tenant_id, session_id, kind)
            check_final_declaration(media, final)
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
                raise _in_progress(kind)
            early: MediaRejected | None = None
            declared: dict[str, object] = {}
            if media.streaming:
                assert final is not None  # check_final_declaration requires it
                early = self._check_streaming_parts(media, final)
                declared = {"declared_size": final.size_bytes, "declared_sha256": final.sha256}
            else:
                check_parts(self._store, media)
            # Only one request verifies a media file at a time; a stale claim (crashed worker) is taken over.
            claimed = db.execute(  # type: ignore[attr-defined]  # an UPDATE's result has a rowcount
                update(Media)
                .where(
                    Media.id == media_id,
                    (Media.state == MediaState.PENDING.value)
                    | ((Media.state == MediaState.VERIFYING.value) & (Media.completed_at < utcnow() - VERIFY_TAKEOVER)),
                )
                .values(state=MediaState.VERIFYING.value, completed_at=utcnow(), **declared)
            ).rowcount
            db.commit()
            if claimed != 1:
                raise _in_progress(kind)
        assert upload_id is not None
        try:
            outcome = early or self._assemble_and_validate(media_id, key, upload_id, kind)
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
        if early is not None:
            self._hashes.forget(media_id)
        return self._record(tenant_id, session_id, kind, outcome)

    def _check_streaming_parts(self, media: Media, final: CompleteRequest) -> MediaRejected | None:
        """Refuse (422) a gap or a short part that is not the last; None, or a `size_mismatch` rejection when the
        stored parts do not add up to the size the client sent."""
        listed = parts_in_storage(self._store, media)
        if not listed and self._store.stat(media.object_key) is not None:
            return None  # assembled by an earlier complete that died before recording it: verified as any other
        total = check_streaming_parts(media, listed)
        if total != final.size_bytes:
            return MediaRejected(
                "size_mismatch",
                f"{media.kind}'s {len(listed)} parts hold {total} bytes but complete says {final.size_bytes}: "
                "register a new session and upload the recording again",
            )
        return None

    def _record(self, tenant_id: str, session_id: str, kind: str, outcome: Outcome) -> SessionOut:
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

    def _assemble_and_validate(self, media_id: str, key: str, upload_id: str, kind: str) -> Outcome:
        """The video's probe, the event log's `{"events_count": n}`, a checked enrolment, or why the media is
        rejected."""
        with self._db() as db:
            media = db.get(Media, media_id)
            assert media is not None
            declared_size, declared_sha, count = media.declared_size, media.declared_sha256, media.part_count
        assert declared_size is not None and declared_sha is not None and count is not None  # set at complete
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
                    outcome = required_enrolment_checks(self._enrolments).first_pass(kind, reader, self._probe_limits)
                else:
                    outcome = probe_video(reader, self._probe_limits)
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
                return required_enrolment_checks(self._enrolments).check(outcome, lambda: self._store.open(key))
            except MediaRejected as rejected:
                return rejected
        assert not isinstance(outcome, bytes)
        return outcome
