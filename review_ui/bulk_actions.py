"""Reviewer throughput: the queue's bulk actions on the sessions ticked on one page (issue 20).

Reviewers are the scarce resource, so a reviewer clears the sessions with nothing left to look at in one step, and
an integrity officer hands sessions to reviewers. A false Clean costs integrity, so each action checks every
session the way the single action would, and refuses per session, saying why in words the page shows after the
candidate ("c-17 has undecided flags: open it"):

- Assign (officers and admins): the session's claim goes to a reviewer who may see its exam, for the assignment's
  TTL, unless someone else holds a live claim on it. Not to the reviewer who set a Rules Violation that awaits its
  second reviewer (four eyes).
- Release: a reviewer releases their own claims; officers and admins anyone's.
- Mark Clean: only a session with no flag left to look at (none at all, or every one dismissed), through the same
  path as one reviewer deciding Clean (`claim`, then `set_outcome`), so its version, audit entries and webhook are
  those of a single decision. A QC sample of the exam's auto-clear is left to be opened: clearing it unseen would
  defeat the sample.

Each session is its own transaction, so one refused session does not undo the others. A request is audited once
more as `bulk_action`, with its counts and each session's result; after the redirect the queue page reads that
entry back for its summary, so reloading the page repeats nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.tables import AuditEvent, Exam, ExamSession, SessionReview, User, UserScope
from core.vocabulary import Decision, Outcome, ReviewStatus, Role
from review_ui.accounts import Scope, scope_of
from review_ui.decisions import REVIEWABLE, Actor, ReviewRefused, claim, set_outcome, take_claim
from review_ui.http import DB, CheckedForm, Who, actor, done, review_app
from review_ui.queue import live_claimant, parse_queue_filter, visible_session
from review_ui.results import flags_with_decisions

MAX_SESSIONS: Final = 100
"""Sessions one request may act on (a queue page shows 50)."""
REVIEW_ROLES: Final = frozenset({Role.REVIEWER, Role.OFFICER, Role.ADMIN})
ASSIGNERS: Final = frozenset({Role.OFFICER, Role.ADMIN})
SELECT_PREFIX: Final = "select."  # a row's checkbox: `select.<session id>` = on

router = APIRouter(prefix="/review", include_in_schema=False)


class BulkAction(StrEnum):
    ASSIGN = "assign"
    RELEASE = "release"
    CLEAN = "clean"


@dataclass(frozen=True)
class Skipped:
    session_id: str
    candidate_id: str | None  # None: a session this user may not see
    reason: str  # reads after the candidate: "has undecided flags: open it"


@dataclass(frozen=True)
class BulkResult:
    action: BulkAction
    done: list[str]
    skipped: list[Skipped]
    assignee: str | None = None  # the username an assignment went to


def summary(result: BulkResult) -> str:
    """What the queue page says after a bulk action: "Marked Clean 7; skipped 2: c-17 has undecided flags: ..."."""
    n = len(result.done)
    head = {
        BulkAction.ASSIGN: f"Assigned {n} to {result.assignee}",
        BulkAction.RELEASE: f"Released {n}",
        BulkAction.CLEAN: f"Marked Clean {n}",
    }[result.action]
    if not result.skipped:
        return head
    reasons = "; ".join(f"{s.candidate_id or f'session {s.session_id}'} {s.reason}" for s in result.skipped)
    return f"{head}; skipped {len(result.skipped)}: {reasons}"


def _username(db: Session, user_id: str) -> str:
    return db.scalar(select(User.username).where(User.id == user_id)) or "a removed user"


def assign(
    db: Session, session: ExamSession, assignee: User, assignee_scope: Scope, by: Actor, now: datetime, ttl: timedelta
) -> None:
    """Give the session's claim to `assignee` until now + ttl (officers and admins); refused while someone else
    holds a live claim, and for a reviewer who may not see the session's exam."""
    if by.user.role not in ASSIGNERS:
        raise ReviewRefused(403, "assigning sessions is for integrity officers and admins")
    if session.state not in REVIEWABLE:
        raise ReviewRefused(409, f"is {session.state}: only sessions to review are assigned")
    if not assignee_scope.allows(session.tenant_id, session.exam_id):
        raise ReviewRefused(409, f"is outside {assignee.username}'s scope: assign someone who may see its exam")
    review = db.get(SessionReview, session.id)
    if review is not None and review.status == ReviewStatus.AWAITING_SECOND and review.reviewer_id == assignee.id:
        raise ReviewRefused(409, f"awaits a second reviewer, and {assignee.username} set it: assign someone else")
    holder = live_claimant(session, now)
    if holder is not None and holder != assignee.id:
        raise ReviewRefused(409, f"is claimed by {_username(db, holder)}: release it first, or wait for the claim")
    if not take_claim(db, session, assignee.id, now, ttl):  # a reviewer claiming it meanwhile wins or loses whole
        raise ReviewRefused(409, "was claimed by another reviewer a moment ago: reload the queue")
    audit.record(
        db, by.name, "review_assigned", at=now, tenant_id=session.tenant_id, session_id=session.id, ip=by.ip,
        to=f"user:{assignee.username}", until=(now + ttl).isoformat(),
    )  # fmt: skip


def release(db: Session, session: ExamSession, by: Actor, now: datetime) -> None:
    """End the live claim on the session: a reviewer their own, an officer or admin anyone's."""
    holder = live_claimant(session, now)
    if holder is None:
        raise ReviewRefused(409, "is not claimed: nothing to release")
    if holder != by.user.id and by.user.role not in ASSIGNERS:
        raise ReviewRefused(403, f"is claimed by {_username(db, holder)}: only they or an officer can release it")
    session.claimed_by, session.claim_expires_at = None, None
    audit.record(
        db, by.name, "release", at=now, tenant_id=session.tenant_id, session_id=session.id, ip=by.ip,
        claim_of=f"user:{_username(db, holder)}",
    )  # fmt: skip


def mark_clean(db: Session, session: ExamSession, by: Actor, now: datetime, claim_ttl: timedelta) -> None:
    """Decide Clean as one reviewer would (claim, then the outcome), for a session with no flag left to look at; a
    refusal after the claim is rolled back with it by the caller."""
    if session.state not in REVIEWABLE:
        raise ReviewRefused(409, f"is {session.state}: only sessions to review are marked Clean")
    review = db.get(SessionReview, session.id)
    if review is not None:
        raise ReviewRefused(409, f"already has an outcome ({review.outcome}, {review.status.replace('_', ' ')})")
    if session.qc_sample:
        raise ReviewRefused(409, "is a QC sample of the exam's auto-clear: open it and review it")
    holder = live_claimant(session, now)
    if holder is not None and holder != by.user.id:
        raise ReviewRefused(409, f"is claimed by {_username(db, holder)}")
    claim(db, session, by, now, claim_ttl)  # first: nobody adds or decides a flag while the flags are read
    made = [decision for _, decision in flags_with_decisions(db, session.id)]
    if any(decision is None for decision in made):
        raise ReviewRefused(409, "has undecided flags: open it")
    if any(decision is not None and decision.decision != Decision.DISMISSED for decision in made):
        raise ReviewRefused(409, "has confirmed flags: open it to set its outcome")
    set_outcome(db, session, Outcome.CLEAN, "", by, now)


@dataclass(frozen=True)
class BulkRequest:
    action: BulkAction
    session_ids: list[str]
    assignee: User | None = None  # for ASSIGN


def apply_bulk(
    db: Session,
    scope: Scope,
    request: BulkRequest,
    by: Actor,
    now: datetime,
    *,
    claim_ttl: timedelta,
    assignment_ttl: timedelta,
) -> BulkResult:
    """Apply the action to each session in a transaction of its own, then audit the request as `bulk_action`
    (the caller commits that). A session this scope may not see is skipped like one that does not exist."""
    ids = list(dict.fromkeys(request.session_ids))
    if not ids:
        raise ReviewRefused(422, "tick at least one session in the queue first")
    if len(ids) > MAX_SESSIONS:
        raise ReviewRefused(422, f"at most {MAX_SESSIONS} sessions at once; {len(ids)} were ticked: tick fewer")
    if request.action is BulkAction.ASSIGN and by.user.role not in ASSIGNERS:
        raise ReviewRefused(403, "assigning sessions is for integrity officers and admins")
    assignee = request.assignee
    if request.action is BulkAction.ASSIGN and assignee is None:
        raise ReviewRefused(422, "choose the reviewer to assign the sessions to")
    assignee_scope = scope_of(db, assignee) if assignee is not None else None
    done_ids: list[str] = []
    skipped: list[Skipped] = []
    tenants: set[str] = set()
    for session_id in ids:
        session = visible_session(db, scope, session_id)
        if session is None:
            skipped.append(Skipped(session_id, None, "was not found"))
            continue
        candidate = session.candidate_id
        tenants.add(session.tenant_id)
        try:
            if request.action is BulkAction.ASSIGN and assignee is not None and assignee_scope is not None:
                assign(db, session, assignee, assignee_scope, by, now, assignment_ttl)
            elif request.action is BulkAction.RELEASE:
                release(db, session, by, now)
            else:
                mark_clean(db, session, by, now, claim_ttl)
            db.commit()
            done_ids.append(session_id)
        except ReviewRefused as refused:
            db.rollback()
            skipped.append(Skipped(session_id, candidate, str(refused)))
    result = BulkResult(request.action, done_ids, skipped, assignee.username if assignee else None)
    audit.record(
        db, by.name, "bulk_action", at=now, tenant_id=next(iter(tenants)) if len(tenants) == 1 else None, ip=by.ip,
        bulk=request.action.value, done=len(done_ids), skipped=len(skipped), assignee=result.assignee,
        sessions_done=done_ids, sessions_skipped=[{"session": s.session_id, "reason": s.reason} for s in skipped],
    )  # fmt: skip
    return result


def assignable_people(db: Session, scope: Scope) -> list[tuple[str, str]]:
    """(user id, username) of the people an officer with `scope` may assign sessions to: enabled users who review,
    with a scope in one of the officer's platforms, and admins. Each assignment checks the session's exam too."""
    stmt = select(User.id, User.username).where(User.role.in_(list(REVIEW_ROLES)), User.disabled_at.is_(None))
    if not scope.everything:
        tenants = set(scope.tenant_ids) | set(db.scalars(select(Exam.tenant_id).where(Exam.id.in_(scope.exam_ids))))
        in_tenants = select(UserScope.user_id).where(UserScope.tenant_id.in_(tenants))
        stmt = stmt.where(or_(User.id.in_(in_tenants), User.role == Role.ADMIN.value))
    return [(user_id, name) for user_id, name in db.execute(stmt.order_by(User.username))]


def recorded_summary(db: Session, scope: Scope, by: User, seq: int) -> str | None:
    """The summary of the bulk action `by` made as audit entry `seq` (None for anyone else's, or no such entry),
    with the candidates of the sessions this scope sees."""
    entry = db.scalar(
        select(AuditEvent).where(
            AuditEvent.seq == seq, AuditEvent.action == "bulk_action", AuditEvent.actor == f"user:{by.username}"
        )
    )
    if entry is None:
        return None
    detail: dict[str, Any] = entry.detail
    reasons = {item["session"]: item["reason"] for item in detail.get("sessions_skipped", [])}
    candidates = dict(
        db.execute(
            select(ExamSession.id, ExamSession.candidate_id).where(
                ExamSession.id.in_(list(reasons)), scope.sessions_clause()
            )
        ).all()
    )
    skipped = [Skipped(sid, candidates.get(sid), reason) for sid, reason in reasons.items()]
    return summary(BulkResult(BulkAction(detail["bulk"]), detail["sessions_done"], skipped, detail.get("assignee")))


def _bulk_request(db: Session, form: dict[str, str]) -> BulkRequest:
    try:
        action = BulkAction(form.get("action", ""))
    except ValueError:
        allowed = ", ".join(repr(a.value) for a in BulkAction)
        raise ReviewRefused(
            422, f"choose what to do with the ticked sessions: action must be one of {allowed}"
        ) from None
    ids = [name.removeprefix(SELECT_PREFIX) for name, value in form.items() if name.startswith(SELECT_PREFIX) and value]
    assignee = None
    if action is BulkAction.ASSIGN and form.get("assignee"):
        assignee = db.get(User, form["assignee"])
        if assignee is None or assignee.disabled_at is not None or assignee.role not in REVIEW_ROLES:
            raise ReviewRefused(422, "the reviewer chosen cannot review (removed or disabled): choose another")
    return BulkRequest(action, ids, assignee)


def _back_to_queue(form: dict[str, str], seq: int | None) -> str:
    """The queue page the form came from (its filter kept), showing the summary of audit entry `seq`."""
    back = urlsplit(form.get("back", ""))
    query, _ = parse_queue_filter(dict(parse_qsl(back.query)) if back.path == "/review/queue" else {})
    return query.link() + (f"&bulk={seq}" if seq is not None else "")


@router.post("/queue/bulk")
def bulk(request: Request, db: DB, who: Who, form: CheckedForm) -> Response:
    """Assign, release or mark Clean the sessions ticked in the queue (`select.<session id>`), then back to it."""
    config = review_app(request).config
    result = apply_bulk(
        db, who.scope, _bulk_request(db, form), actor(who, request), utcnow(), claim_ttl=config.claim_ttl,
        assignment_ttl=config.assignment_ttl,
    )  # fmt: skip
    db.flush()
    seq = db.scalar(select(func.max(AuditEvent.seq)))  # the entry just recorded: the chain is ours until commit
    db.commit()
    skipped = [{"session": s.session_id, "candidate": s.candidate_id, "reason": s.reason} for s in result.skipped]
    return done(
        request, _back_to_queue(form, seq), action=result.action.value, done=result.done, skipped=skipped,
        summary=summary(result),
    )  # fmt: skip
