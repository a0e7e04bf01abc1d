"""A tenant's sessions and media as the upload protocol finds, checks and shows them.

Lookups scope every id to the calling tenant (another tenant's session is a 404, like a missing one); the
parts checks compare S3's own part list with what was declared; `session_out` is the API's view of a session
(a streaming file's size and SHA-256 are shown once it is complete, its parts received until then).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from core.states import SessionState
from core.tables import ExamSession, Media, UploadPart
from core.vocabulary import MediaKind, MediaState
from ingest.schemas import EnrolmentQualityOut, IngestError, MediaOut, PartOut, ReasonOut, SessionOut
from storage.object_store import ObjectNotFound, ObjectStore


def session_deleted() -> IngestError:
    return IngestError(410, "session_deleted", "this session was deleted; register a new one")


def expected_part_size(media: Media, part_number: int) -> int:
    """The size part `part_number` of a file of known size must have."""
    count, size = media.part_count, media.declared_size
    assert count is not None and size is not None, "a streaming file's size is known only once it is complete"
    if not 1 <= part_number <= count:
        raise IngestError(
            422,
            "part_number_out_of_range",
            f"{media.kind} has parts 1..{count} of {media.part_size} bytes; got part {part_number}",
        )
    if part_number < count:
        return media.part_size
    return size - media.part_size * (count - 1)


def parts_in_storage(store: ObjectStore, media: Media) -> list[PartOut]:
    assert media.upload_id is not None
    try:
        parts = store.list_parts(media.object_key, media.upload_id)
    except ObjectNotFound:
        return []
    return [PartOut(part_number=p.part_number, size=p.size, etag=p.etag) for p in parts]


def check_parts(store: ObjectStore, media: Media) -> None:
    listed = parts_in_storage(store, media)
    if not listed and store.stat(media.object_key) is not None:
        # An earlier complete assembled the upload (S3 lists no parts once it has) and then failed or died
        # before recording it: the object is verified by size and SHA-256 like any other.
        return
    parts = {p.part_number: p for p in listed}
    count = media.part_count
    assert count is not None, "a declared file's size is known from registration"
    missing = [n for n in range(1, count + 1) if n not in parts]
    if missing:
        shown = missing if len(missing) <= 20 else [*missing[:20], "..."]
        raise IngestError(
            409,
            "missing_parts",
            f"{media.kind} is missing {len(missing)} of {count} parts: upload them, then complete again",
            {"missing": shown},
        )
    wrong = {n: p.size for n, p in parts.items() if n <= count and p.size != expected_part_size(media, n)}
    if wrong:
        raise IngestError(
            409,
            "part_size_invalid",
            f"{media.kind} parts {sorted(wrong)} have the wrong size; parts are {media.part_size} bytes "
            "except the last: send those parts again",
            {"parts": {str(n): s for n, s in wrong.items()}},
        )


def tenant_session(db: Session, tenant_id: str, session_id: str) -> ExamSession:
    session = db.get(ExamSession, session_id)
    if session is None or session.tenant_id != tenant_id:
        # Another tenant's session is indistinguishable from a missing one.
        raise IngestError(404, "session_not_found", f"no session {session_id!r} for this API key")
    return session


def declared_media(db: Session, tenant_id: str, session_id: str, kind: str) -> Media:
    session = tenant_session(db, tenant_id, session_id)
    media = next((m for m in session.media if m.kind == kind), None)
    if media is None:
        declared = sorted(m.kind for m in session.media)
        raise IngestError(404, "media_not_declared", f"session {session_id} declared {declared}, not {kind!r}")
    return media


def pending_media(db: Session, tenant_id: str, session_id: str, kind: str) -> Media:
    media = declared_media(db, tenant_id, session_id, kind)
    if media.session.state in (SessionState.REJECTED, SessionState.DELETED):
        raise IngestError(
            409, "session_closed", f"session {session_id} is {media.session.state}; it takes no more uploads"
        )
    if media.state != MediaState.PENDING:
        raise IngestError(409, "media_already_complete", f"{kind} is {media.state}; it takes no more parts")
    return media


def parts_received(db: Session, media_id: str) -> int:
    """Parts of a media file stored through the API so far."""
    counted = db.scalar(
        select(func.count()).select_from(UploadPart).where(UploadPart.media_id == media_id, UploadPart.etag != "")
    )
    return int(counted or 0)


def media_out(media: Media) -> MediaOut:
    """The API's view of one media file: a streaming file shows no size or SHA-256 until it is complete (then the
    verified ones), and the parts received so far as its part count."""
    shown = not media.streaming or media.state == MediaState.COMPLETE
    if shown:
        assert media.part_count is not None
        part_count = media.part_count
    else:
        db = object_session(media)
        assert db is not None, "media rows are shown while their database session is open"
        part_count = parts_received(db, media.id)
    return MediaOut(
        kind=MediaKind(media.kind),
        state=MediaState(media.state),
        size_bytes=media.declared_size if shown else None,
        sha256=media.declared_sha256 if shown else None,
        content_type=media.content_type,
        streaming=media.streaming,
        part_size=media.part_size,
        part_count=part_count,
        probe=media.video_probe,
        events_count=media.events_count,
        reason=ReasonOut(code=media.reason_code, message=media.reason or "") if media.reason_code else None,
        enrolment=EnrolmentQualityOut(**quality) if (quality := media.enrolment_quality) else None,
    )


def session_out(session: ExamSession) -> SessionOut:
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
        media=[media_out(m) for m in session.media],
    )
