"""Candidates' enrolments: where their reference faces are stored, which one a session uses, and erasing a
candidate altogether.

An enrolment (a photo or a short clip of the candidate's face, checked and reduced to a 128-d template) is
uploaded with a session but belongs to the candidate: its object lives under
`<tenant>/_candidates/<candidate_id>/enrolment/`, and a later session of the same candidate that brings no
enrolment of its own reuses the newest one. Candidate ids are the platform's pseudonymous ids, scoped to a
tenant: the same id under two tenants is two different people.

Templates and enrolment files are biometric data: every query here is scoped to one tenant, nothing here logs
a descriptor, and `erase_candidate` removes them together with every session of the candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.erasure import erase_session
from core.states import SessionState
from core.tables import CandidateEnrolment, ExamSession, Tenant
from core.vocabulary import ENROLMENT_KINDS
from storage.keys import safe_identifier
from storage.object_store import ObjectStore

ERASE_CANDIDATE_CODE = "candidate_erased"


@dataclass(frozen=True)
class CandidatePrefix:
    """Where one candidate's objects live: `<tenant>/_candidates/<candidate>/`. Validated on construction; the
    underscore keeps it apart from exam prefixes, since no exam id may start with one."""

    tenant: str
    candidate: str

    def __post_init__(self) -> None:
        safe_identifier("tenant", self.tenant)
        safe_identifier("candidate", self.candidate)

    @property
    def prefix(self) -> str:
        return f"{self.tenant}/_candidates/{self.candidate}/"

    def enrolment_key(self, session_id: str, kind: str) -> str:
        """`<prefix>enrolment/<session_id>-<kind>`: one object per session and enrolment kind."""
        if kind not in ENROLMENT_KINDS:
            raise ValueError(f"enrolment_key: expected an enrolment kind {sorted(ENROLMENT_KINDS)}, found {kind!r}")
        name = safe_identifier("enrolment object", f"{safe_identifier('session', session_id)}-{kind}")
        return f"{self.prefix}enrolment/{name}"


def latest_enrolment(
    db: Session, tenant_id: str, candidate_id: str, *, session_id: str | None = None
) -> CandidateEnrolment | None:
    """The enrolment to compare the candidate's sessions with; None when the candidate never enrolled.

    The newest accepted enrolment of this tenant's candidate. With ``session_id``, that session's own
    enrolment wins when it has one (a session re-processed after the candidate enrolled again keeps its own);
    of a session that sent a photo and a clip, the one accepted last.
    """
    query = select(CandidateEnrolment).where(
        CandidateEnrolment.tenant_id == tenant_id, CandidateEnrolment.candidate_id == candidate_id
    )
    newest = (CandidateEnrolment.created_at.desc(), CandidateEnrolment.id.desc())
    if session_id is not None:
        own = db.scalars(query.where(CandidateEnrolment.session_id == session_id).order_by(*newest).limit(1)).first()
        if own is not None:
            return own
    return db.scalars(query.order_by(*newest).limit(1)).first()


@dataclass(frozen=True)
class CandidateErasure:
    """What `erase_candidate` removed."""

    candidate_id: str
    sessions_erased: list[str]
    """The candidate's sessions that were live and are now erased (already erased ones are not listed)."""
    enrolments_erased: int
    objects_removed: int


def erase_candidate(
    db: Session, store: ObjectStore, tenant_id: str, candidate_id: str, *, erased_by: str
) -> CandidateErasure | None:
    """Erase every enrolment of this tenant's candidate and every live session of the candidate, in the
    caller's transaction (the caller commits, then logs); None when the tenant never had this candidate.

    Sessions go through `erase_session` (recordings, results and the per-session embeddings under the results
    prefix; rows stay, marked deleted, each erasure audited); then the enrolment rows and everything under the
    candidate's prefix. The whole erasure is audited once more, as `erase_candidate`, with its counts. Calling
    it again finds nothing left and returns an empty erasure.
    """
    tenant = db.get(Tenant, tenant_id)
    if tenant is None:
        return None
    sessions = db.scalars(
        select(ExamSession)
        .where(ExamSession.tenant_id == tenant_id, ExamSession.candidate_id == candidate_id)
        .order_by(ExamSession.created_at, ExamSession.id)
    ).all()
    enrolment_ids = db.scalars(
        select(CandidateEnrolment.id).where(
            CandidateEnrolment.tenant_id == tenant_id, CandidateEnrolment.candidate_id == candidate_id
        )
    ).all()
    if not sessions and not enrolment_ids:
        return None
    erased, removed = [], 0
    for session in sessions:
        if session.state == SessionState.DELETED:
            continue
        removed += erase_session(
            db, store, session, erased_by=erased_by, code=ERASE_CANDIDATE_CODE, reason="the candidate was erased"
        )
        erased.append(session.id)
    gone = db.execute(  # type: ignore[attr-defined]  # a DELETE's result has a rowcount
        delete(CandidateEnrolment).where(
            CandidateEnrolment.tenant_id == tenant_id, CandidateEnrolment.candidate_id == candidate_id
        )
    ).rowcount
    removed += store.delete_prefix(CandidatePrefix(tenant.slug, candidate_id).prefix)
    audit.record(
        db,
        erased_by,
        "erase_candidate",
        at=utcnow(),
        tenant_id=tenant_id,
        candidate_id=candidate_id,
        sessions_erased=len(erased),
        enrolments_erased=gone,
        objects_removed=removed,
    )
    return CandidateErasure(candidate_id, erased, gone, removed)
