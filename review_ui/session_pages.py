"""The reviewer's pages: the queue, claiming, one session with its recordings and evidence, and decisions.

Every session, recording and evidence lookup goes through the user's scope, so another tenant's ids answer
404 exactly like ids that do not exist. Recordings are proxied from object storage with HTTP Range, and
every such access is written to the audit trail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.enrolments import latest_enrolment
from core.states import SessionState
from core.tables import ExamSession, FlagDecision, FlagSegment, Media, User
from core.vocabulary import (
    VIDEO_KINDS,
    Decision,
    FlagKind,
    MediaKind,
    MediaState,
    Outcome,
    ReviewerFlagKind,
    added_flag_kind,
)
from review_ui.bulk_actions import ASSIGNERS, assignable_people, recorded_summary
from review_ui.decisions import (
    REOPENERS,
    FlagSelection,
    ReviewRefused,
    add_flag,
    claim,
    decide_flag,
    decide_many,
    release,
    second_review,
    set_outcome,
    undo_decision,
)
from review_ui.http import (
    DB,
    CheckedForm,
    Who,
    actor,
    client_ip,
    done,
    parse_choice,
    render,
    review_app,
    session_or_404,
    ticked,
)
from review_ui.identity_view import identity_view
from review_ui.note_reasons import note_reasons
from review_ui.policies import session_policy
from review_ui.queue import (
    QueueStatus,
    next_to_review,
    parse_queue_filter,
    queue_page,
    session_view,
    timeline_ticks,
)
from review_ui.results import outcome_versions
from storage.keys import SessionPrefix
from storage.object_store import ObjectNotFound, ObjectStore

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
STREAM_CHUNK = 1024 * 1024

router = APIRouter(prefix="/review", include_in_schema=False)


def exam_events(store: ObjectStore, media: Media) -> list[dict[str, Any]]:
    """The session's exam event log, parsed (ingest validated every line when the upload completed)."""
    raw = b"".join(store.iter_chunks(media.object_key))
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


@router.get("")
def home(who: Who) -> RedirectResponse:
    return RedirectResponse("/review/queue", status_code=303)


@router.get("/queue")
def queue(request: Request, db: DB, who: Who) -> HTMLResponse:
    """The queue, filtered by the form's fields (status, exam, flag kind, from, to, page); empty fields are "any".
    `bulk` names the audit entry of a bulk action this user just made, whose summary the page shows."""
    query, problems = parse_queue_filter(request.query_params)
    result = queue_page(db, who.scope, query, utcnow())
    bulk = request.query_params.get("bulk", "")
    done_summary = recorded_summary(db, who.scope, who.user, int(bulk)) if bulk.isdigit() and len(bulk) < 16 else None
    can_assign = who.user.role in ASSIGNERS
    return render(
        request, "queue.html", who, result=result, query=query, problems=problems, statuses=list(QueueStatus),
        bulk_summary=done_summary, can_assign=can_assign,
        assignees=assignable_people(db, who.scope) if can_assign else [],
    )  # fmt: skip


@router.post("/sessions/{session_id}/claim")
def claim_session(request: Request, session_id: str, db: DB, who: Who, _form: CheckedForm) -> Response:
    session = session_or_404(db, who, session_id)
    claim(db, session, actor(who, request), utcnow(), review_app(request).config.claim_ttl)
    db.commit()
    expires = session.claim_expires_at
    return done(request, f"/review/sessions/{session_id}", claim_expires_at=expires.isoformat() if expires else None)


@router.post("/sessions/{session_id}/release")
def release_session(request: Request, session_id: str, db: DB, who: Who, _form: CheckedForm) -> Response:
    session = session_or_404(db, who, session_id)
    release(db, session, actor(who, request), utcnow())
    db.commit()
    return done(request, "/review/queue")


# -- one session ----------------------------------------------------------------------------------------
@router.get("/sessions/{session_id}")
def session_page(request: Request, session_id: str, db: DB, who: Who) -> HTMLResponse:
    session = session_or_404(db, who, session_id)
    view = session_view(db, session, utcnow())
    audit.record(
        db, f"user:{who.user.username}", "view_session", at=utcnow(), tenant_id=session.tenant_id,
        session_id=session.id, ip=client_ip(request),
    )  # fmt: skip
    db.commit()
    events = (
        exam_events(review_app(request).store, view.media[MediaKind.EVENTS]) if MediaKind.EVENTS in view.media else []
    )
    mine = view.claimed_by == who.user.username
    editable = mine and view.review is None  # flags are locked once the outcome is set
    identity = identity_view(db, session)
    claim_ttl_s = review_app(request).config.claim_ttl.total_seconds()
    history = outcome_lines(db, session.id)
    under_appeal = bool(history) and history[-1].reopened_at is not None and session.state != SessionState.REVIEWED
    can_reopen = who.user.role in REOPENERS and session.state == SessionState.REVIEWED
    shared = set(
        db.scalars(
            select(FlagDecision.segment_id).where(FlagDecision.session_id == session.id, FlagDecision.note_shared)
        )
    )  # the flags whose notes go to the platform once final
    return render(
        request, "session.html", who, view=view, events=events, mine=mine, editable=editable, identity=identity,
        claim_ttl_s=claim_ttl_s, ticks=timeline_ticks(session.duration_s or 0), reasons=note_reasons(session.tenant),
        reviewer_kinds=[k.value for k in ReviewerFlagKind], history=history, under_appeal=under_appeal,
        can_reopen=can_reopen, shared_notes=shared, policy=session_policy(db, session),
    )  # fmt: skip


@dataclass(frozen=True)
class OutcomeLine:
    """One final outcome as the session page lists it, people by username (None: a removed user)."""

    version: int
    outcome: str
    decided_by: str | None
    decided_by_system: str | None  # "system:auto_clear" where no person decided
    second_by: str | None
    decided_at: datetime
    reopened_by: str | None
    reopen_reason: str | None
    reopened_at: datetime | None


def outcome_lines(db: Session, session_id: str) -> list[OutcomeLine]:
    versions = outcome_versions(db, session_id)
    people = {v.decided_by for v in versions} | {v.second_by for v in versions} | {v.reopened_by for v in versions}
    names: dict[str | None, str] = {
        user_id: username
        for user_id, username in db.execute(select(User.id, User.username).where(User.id.in_(people - {None})))
    }
    return [
        OutcomeLine(
            version=v.version,
            outcome=v.outcome,
            decided_by=names.get(v.decided_by),
            decided_by_system=v.decided_by_system,
            second_by=names.get(v.second_by),
            decided_at=v.decided_at,
            reopened_by=names.get(v.reopened_by),
            reopen_reason=v.reopen_reason,
            reopened_at=v.reopened_at,
        )
        for v in versions
    ]


@router.get("/sessions/{session_id}/media/{kind}")
def recording(request: Request, session_id: str, kind: str, db: DB, who: Who) -> Response:
    """The webcam or screen recording, proxied from object storage with HTTP Range (seeking works). A browser's
    recording is served from the seekable copy the pipeline made of it (`pipelines.remux`) once there is one."""
    session = session_or_404(db, who, session_id)
    media = next(
        (m for m in session.media if m.kind == kind and kind in VIDEO_KINDS and m.state == MediaState.COMPLETE), None
    )
    if media is None:
        raise ReviewRefused(404, "no such recording")
    store = review_app(request).store
    seekable = SessionPrefix(session.tenant.slug, session.exam.external_id, session.id).seekable_key(kind)
    info = store.stat(seekable) or store.stat(media.object_key)
    if info is None:
        raise ReviewRefused(404, "the recording is no longer stored")
    start, end = 0, info.size - 1
    partial = False
    header = request.headers.get("range")
    if header:
        match = _RANGE.match(header.strip())
        if match is None or (not match[1] and not match[2]):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{info.size}"})
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), info.size - 1) if match[2] else info.size - 1
        else:  # suffix range: the last N bytes
            start = max(0, info.size - int(match[2]))
        if start > end or start >= info.size:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{info.size}"})
        partial = True
    audit.record(
        db, f"user:{who.user.username}", "view_recording", at=utcnow(), tenant_id=session.tenant_id,
        session_id=session.id, ip=client_ip(request), media=kind, range=f"{start}-{end}",
        seekable_copy=info.key == seekable,
    )  # fmt: skip
    db.commit()

    def body() -> Iterator[bytes]:
        offset = start
        while offset <= end:
            chunk = store.read_range(info.key, offset, min(STREAM_CHUNK, end - offset + 1))
            if not chunk:
                return
            yield chunk
            offset += len(chunk)

    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start + 1),
        "Cache-Control": "private, no-store",
    }
    if partial:
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    return StreamingResponse(
        body(),
        status_code=206 if partial else 200,
        media_type=info.content_type if info.key == seekable and info.content_type else media.content_type,
        headers=headers,
    )


@router.get("/sessions/{session_id}/evidence/{flag_id}/{index}")
def evidence(request: Request, session_id: str, flag_id: str, index: int, db: DB, who: Who) -> Response:
    session = session_or_404(db, who, session_id)
    segment = db.get(FlagSegment, flag_id)
    if segment is None or segment.session_id != session.id or not 0 <= index < len(segment.evidence_keys):
        raise ReviewRefused(404, "no such evidence")
    try:
        jpeg = b"".join(review_app(request).store.iter_chunks(segment.evidence_keys[index]))
    except ObjectNotFound:
        raise ReviewRefused(404, "the evidence frame is no longer stored") from None
    audit.record(
        db, f"user:{who.user.username}", "view_evidence", at=utcnow(), tenant_id=session.tenant_id,
        session_id=session.id, ip=client_ip(request), flag=flag_id,
    )  # fmt: skip
    db.commit()
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


def _stored(request: Request, key: str, what: str) -> bytes:
    try:
        return b"".join(review_app(request).store.iter_chunks(key))
    except ObjectNotFound:
        raise ReviewRefused(404, f"the {what} is no longer stored") from None


@router.get("/sessions/{session_id}/enrolment")
def enrolment(request: Request, session_id: str, db: DB, who: Who) -> Response:
    """The candidate's enrolment photo or clip that this session is compared with (biometric: audited)."""
    session = session_or_404(db, who, session_id)
    enrolled = latest_enrolment(db, session.tenant_id, session.candidate_id, session_id=session.id)
    if enrolled is None:
        raise ReviewRefused(404, "this candidate has no enrolment")
    body = _stored(request, enrolled.object_key, "enrolment")
    audit.record(
        db, f"user:{who.user.username}", "view_enrolment", at=utcnow(), tenant_id=session.tenant_id,
        session_id=session.id, ip=client_ip(request), enrolment=enrolled.id,
    )  # fmt: skip
    db.commit()
    photo = enrolled.kind == MediaKind.ENROLMENT_PHOTO
    media_type = ("image/png" if body[:4] == b"\x89PNG" else "image/jpeg") if photo else "video/mp4"
    return Response(body, media_type=media_type, headers={"Cache-Control": "private, no-store"})


@router.get("/sessions/{session_id}/thumbnails")
def thumbnails(request: Request, session_id: str, db: DB, who: Who) -> Response:
    """The session's thumbnail strip: one JPEG sprite of keyframes (see `pipelines.thumbnails`)."""
    session = session_or_404(db, who, session_id)
    key = (session.thumbnails or {}).get("key")
    return _session_jpeg(request, db, who, session, key, "thumbnail strip", "thumbnails")


@router.get("/sessions/{session_id}/identity/reference")
def identity_reference(request: Request, session_id: str, db: DB, who: Who) -> Response:
    """The frame the session's reference face was taken from: a face that matched."""
    session = session_or_404(db, who, session_id)
    key = (session.identity or {}).get("reference_frame")
    return _session_jpeg(request, db, who, session, key, "reference frame", "identity reference")


def _session_jpeg(
    request: Request, db: DB, who: Who, session: ExamSession, key: Any, what: str, frame: str
) -> Response:
    """A JPEG the pipeline stored for the session (biometric: every view is audited)."""
    if not key:
        raise ReviewRefused(404, f"no {what} for this session (it may have been processed before they were made)")
    jpeg = _stored(request, str(key), what)
    audit.record(
        db, f"user:{who.user.username}", "view_evidence", at=utcnow(), tenant_id=session.tenant_id,
        session_id=session.id, ip=client_ip(request), frame=frame,
    )  # fmt: skip
    db.commit()
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/sessions/{session_id}/flags/{flag_id}/decision")
def flag_decision(request: Request, session_id: str, flag_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    session = session_or_404(db, who, session_id)
    decision = parse_choice(Decision, form.get("decision", ""), "decision")
    note, shared = form.get("note", ""), ticked(form, "note_shared")
    decide_flag(db, session, flag_id, decision, note, actor(who, request), utcnow(), shared=shared)
    db.commit()
    return done(request, f"/review/sessions/{session_id}", flag=flag_id, decision=decision.value)


@router.post("/sessions/{session_id}/flags/bulk")
def flags_bulk(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    """Confirm or dismiss the undecided flags of one kind, shorter than a length, or within a range."""
    session = session_or_404(db, who, session_id)
    decision = parse_choice(Decision, form.get("decision", ""), "decision")
    kind = parse_choice(FlagKind, form["kind"], "kind") if form.get("kind") else None
    which = FlagSelection(
        kind,
        optional_seconds(form, "shorter_than_s", "shorter than"),
        optional_seconds(form, "from_s", "from"),
        optional_seconds(form, "to_s", "to"),
    )
    note, shared = form.get("note", ""), ticked(form, "note_shared")
    count = decide_many(db, session, which, decision, note, actor(who, request), utcnow(), shared=shared)
    db.commit()
    return done(request, f"/review/sessions/{session_id}", decided=count)


def optional_seconds(form: dict[str, str], field: str, label: str) -> float | None:
    value = form.get(field, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ReviewRefused(422, f"{label!r} must be a number of seconds") from None
    if not seconds >= 0:
        raise ReviewRefused(422, f"{label!r} must be 0 seconds or more")
    return seconds


@router.post("/sessions/{session_id}/flags/{flag_id}/undo")
def flag_undo(request: Request, session_id: str, flag_id: str, db: DB, who: Who, _form: CheckedForm) -> Response:
    session = session_or_404(db, who, session_id)
    undo_decision(db, session, flag_id, actor(who, request), utcnow())
    db.commit()
    return done(request, f"/review/sessions/{session_id}", flag=flag_id)


@router.post("/sessions/{session_id}/flags")
def add_missed_flag(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    session = session_or_404(db, who, session_id)
    try:
        kind = added_flag_kind(form.get("kind", ""))
    except ValueError as exc:
        raise ReviewRefused(422, str(exc)) from None
    try:
        start_s, end_s = float(form.get("start_s", "")), float(form.get("end_s", ""))
    except ValueError:
        raise ReviewRefused(422, "start and end must be numbers of seconds") from None
    segment = add_flag(
        db, session, kind, start_s, end_s, form.get("note", ""), actor(who, request), utcnow(),
        shared=ticked(form, "note_shared"),
    )  # fmt: skip
    db.commit()
    return done(request, f"/review/sessions/{session_id}", flag=segment.id)


@router.post("/sessions/{session_id}/outcome")
def outcome(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    session = session_or_404(db, who, session_id)
    chosen = parse_choice(Outcome, form.get("outcome", ""), "outcome")
    note, shared = form.get("note", ""), ticked(form, "note_shared")
    status = set_outcome(db, session, chosen, note, actor(who, request), utcnow(), shared=shared)
    db.commit()
    following = "/review/queue"
    if form.get("then") == "next":  # "Submit and next": claim the top of the queue and open it
        upcoming = next_to_review(db, who.scope, utcnow())
        if upcoming is not None:
            try:
                claim(db, upcoming, actor(who, request), utcnow(), review_app(request).config.claim_ttl)
                db.commit()
                following = f"/review/sessions/{upcoming.id}"
            except ReviewRefused:  # someone else took it a moment ago: the queue shows what is left
                db.rollback()
    return done(request, following, status=status)


@router.post("/sessions/{session_id}/second-review")
def confirm_second(request: Request, session_id: str, db: DB, who: Who, form: CheckedForm) -> Response:
    session = session_or_404(db, who, session_id)
    verdict = form.get("verdict", "")
    if verdict not in {"confirm", "return"}:
        raise ReviewRefused(422, "verdict must be 'confirm' or 'return'")
    note, shared = form.get("note", ""), ticked(form, "note_shared")
    status = second_review(db, session, verdict == "confirm", note, actor(who, request), utcnow(), shared=shared)
    db.commit()
    return done(request, "/review/queue", status=status)
