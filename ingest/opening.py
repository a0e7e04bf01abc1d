"""Opening a media file's upload: where it is stored, its S3 multipart upload and its row; and an enrolment added
to a session after its registration.

A session's files are opened at registration (`ingest.uploads.Uploads.register`). An enrolment file (the
candidate's reference photo or clip) may also be added later, while the session is still uploading: a browser
recorder has the candidate's photo only after its camera check, when the session already exists. Either way
the file is opened by `open_media`, stored under the candidate, and uploaded and completed like any other.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from core.enrolments import CandidatePrefix
from core.states import SessionState
from core.tables import ExamSession, Media
from core.vocabulary import ENROLMENT_KINDS
from ingest.records import session_deleted
from ingest.schemas import IngestError, MediaDeclaration
from storage.keys import SessionPrefix
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)


def media_key(session: ExamSession, kind: str) -> str:
    """Where a file of `session` is stored: an enrolment under the candidate (kept beyond this session), any
    other file under the session."""
    if kind in ENROLMENT_KINDS:
        return CandidatePrefix(session.tenant.slug, session.candidate_id).enrolment_key(session.id, kind)
    return SessionPrefix(session.tenant.slug, session.exam.external_id, session.id).key("media", kind)


def open_media(
    db: Session,
    store: ObjectStore,
    session: ExamSession,
    declared: MediaDeclaration,
    part_size: int,
    opened: list[tuple[str, str]],
) -> Media:
    """Create the file's multipart upload and add its row to `db` (the caller commits); the upload's (key, id)
    goes into `opened`, for the caller to abort if its transaction does not commit."""
    key = media_key(session, declared.kind)
    upload_id = store.create_multipart(key, content_type=declared.content_type)
    opened.append((key, upload_id))
    media = Media(
        session_id=session.id,
        kind=declared.kind,
        object_key=key,
        content_type=declared.content_type,
        declared_size=declared.size_bytes,
        declared_sha256=declared.sha256,
        streaming=declared.streaming,
        part_size=part_size,
        upload_id=upload_id,
    )
    db.add(media)
    return media


def check_addable(declared: MediaDeclaration) -> None:
    """Refuse (422 `media_not_addable`) a file other than an enrolment: recordings are declared at registration."""
    if declared.kind not in ENROLMENT_KINDS:
        raise IngestError(
            422,
            "media_not_addable",
            f"{declared.kind} cannot be added to a registered session: only enrolment_photo or enrolment_clip "
            "can; declare recordings when registering the session",
            {"kind": declared.kind},
        )


def same_declaration(media: Media, declared: MediaDeclaration) -> bool:
    return (media.declared_size, media.declared_sha256, media.content_type) == (
        declared.size_bytes,
        declared.sha256,
        declared.content_type,
    )


def existing_or_addable(session: ExamSession, declared: MediaDeclaration) -> Media | None:
    """The session's file of this kind if it was declared exactly so already (an idempotent repeat), or None when
    the file may be added; raises the refusal otherwise (410 `session_deleted`, 409 `media_already_declared`,
    409 `session_not_uploading`)."""
    if session.state == SessionState.DELETED:
        raise session_deleted()
    existing = next((m for m in session.media if m.kind == declared.kind), None)
    if existing is not None:
        if same_declaration(existing, declared):
            return existing
        raise IngestError(
            409,
            "media_already_declared",
            f"session {session.id} already has an {declared.kind} (state {existing.state}, {existing.declared_size} "
            f"bytes, SHA-256 {existing.declared_sha256}): a session takes one {declared.kind}; upload that one, or "
            "add the new one to the candidate's next session",
            {"kind": declared.kind, "state": existing.state},
        )
    if session.state != SessionState.UPLOADING:
        raise IngestError(
            409,
            "session_not_uploading",
            f"session {session.id} is {session.state}: files can be added only while it is uploading; add the "
            f"{declared.kind} to the candidate's next session",
            {"state": session.state},
        )
    return None
