"""The sweeper: objects under erased sessions, or under session prefixes that no session owns, are deleted.

Erasure deletes a session's objects in the transaction that marks it deleted, and a worker that loses the race
deletes what it wrote (`pipelines.process`). What can still slip through is found here: a worker killed
between writing an evidence frame and cleaning up, a write that landed after the erasure listed the prefix, a
session row lost to a database restore. The sweep walks the bucket's session prefixes
(`<tenant>/<exam>/<session>/`, one listing per level, never every object) and judges each by its row
(`sweep_reason`):

- the row says `deleted`: everything under it goes, whenever it was written;
- no row owns the prefix: everything goes once the newest write under it is older than the grace period (a
  session's row is committed before anything is uploaded under it, so a young prefix without one is left be);
- any other state: untouched, without even a listing. A session being uploaded or processed is never swept.

Only the tenants the database knows are walked: other top-level prefixes (and a tenant's `_candidates/`, whose
enrolments `core.erasure` erases by key) are not the sweeper's to judge. Every version and delete marker goes
too (`ObjectStore.delete_prefix`). Each sweep is audited, as `sweep` by `SWEPT_BY`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.states import SessionState
from core.tables import Exam, ExamSession, Tenant
from storage.keys import InvalidIdentifier, safe_identifier
from storage.object_store import ObjectStore

log = logging.getLogger(__name__)

SWEPT_BY = "system:sweeper"
SWEEP_GRACE = timedelta(hours=24)
"""How old the newest write under a prefix that no session owns must be before it is swept."""
_LOOKUP_BATCH = 500  # session ids per query


class SweepReason(StrEnum):
    ERASED = "erased"  # its session is erased
    NO_SESSION = "no_session"  # no session row owns it


@dataclass(frozen=True)
class Owner:
    """The session row that a prefix's last component names: its state, and the prefix its objects belong under."""

    state: str
    prefix: str


def sweep_reason(
    prefix: str, owner: Owner | None, newest_write: datetime | None, now: datetime, grace: timedelta
) -> SweepReason | None:
    """Why the objects under a session prefix must go, or None when they stay (see the module's docstring).

    A row that names the same session id under another tenant or exam does not own this prefix.
    """
    if owner is not None and owner.prefix == prefix:
        return SweepReason.ERASED if owner.state == SessionState.DELETED.value else None
    if newest_write is None or now - newest_write < grace:
        return None
    return SweepReason.NO_SESSION


@dataclass(frozen=True)
class Swept:
    """A session prefix whose objects were (or, dry, would be) deleted."""

    prefix: str
    tenant_id: str
    session_id: str
    reason: SweepReason
    objects: int
    """How many objects held data (versions of one key count once)."""


@dataclass(frozen=True)
class NotSwept:
    """A prefix the sweep could not list or delete; the next sweep tries again."""

    prefix: str
    error: str


@dataclass(frozen=True)
class SweepRun:
    """What one sweep deleted (or, dry, would delete), and what it could not."""

    swept: list[Swept] = field(default_factory=list)
    failed: list[NotSwept] = field(default_factory=list)


def sweep(
    db: Callable[[], AbstractContextManager[Session]],
    store: ObjectStore,
    now: datetime,
    *,
    grace: timedelta = SWEEP_GRACE,
    dry_run: bool = False,
    tenants: Collection[str] | None = None,
) -> SweepRun:
    """Delete (or, with ``dry_run``, only list) the objects under session prefixes that `sweep_reason` condemns,
    for every tenant in the database, or only those whose slugs are in ``tenants``."""
    with db() as session:
        known = [
            (slug, tenant_id)
            for slug, tenant_id in session.execute(select(Tenant.slug, Tenant.id).order_by(Tenant.slug))
            if tenants is None or slug in tenants
        ]
    run = SweepRun()
    for slug, tenant_id in known:
        try:
            exams = [p for p in store.list_prefixes(f"{slug}/") if _names_an_identifier(p)]
        except Exception as exc:  # S3 down: this tenant waits for the next sweep, the others are tried
            run.failed.append(NotSwept(f"{slug}/", f"{type(exc).__name__}: {exc}"))
            continue
        for exam in exams:
            _sweep_exam(db, store, now, grace, dry_run, tenant_id, exam, run)
    log.info(
        "sweep run",
        extra={
            "dry_run": dry_run,
            "prefixes": len(run.swept),
            "objects": sum(s.objects for s in run.swept),
            "failed": len(run.failed),
        },
    )
    return run


def _sweep_exam(
    db: Callable[[], AbstractContextManager[Session]],
    store: ObjectStore,
    now: datetime,
    grace: timedelta,
    dry_run: bool,
    tenant_id: str,
    exam_prefix: str,
    run: SweepRun,
) -> None:
    """Sweep the session prefixes under one `<tenant>/<exam>/`, recording what went and what failed in ``run``."""
    try:
        prefixes = [p for p in store.list_prefixes(exam_prefix) if _names_an_identifier(p)]
        owners = _owners(db, [_last_component(p) for p in prefixes])
    except Exception as exc:
        run.failed.append(NotSwept(exam_prefix, f"{type(exc).__name__}: {exc}"))
        return
    for prefix in prefixes:
        session_id = _last_component(prefix)
        owner = owners.get(session_id)
        if owner is not None and owner.prefix == prefix and owner.state != SessionState.DELETED.value:
            continue  # live: not even listed
        try:
            versions = store.list_versions(prefix)
            newest = max((v.last_modified for v in versions if v.last_modified is not None), default=None)
            reason = sweep_reason(prefix, owner, newest, now, grace)
            objects = len({v.key for v in versions if not v.delete_marker})
            if reason is None or not versions:
                continue
            if not dry_run:
                objects = _delete(db, store, prefix, tenant_id, session_id, reason)
        except Exception as exc:
            log.exception("prefix not swept", extra={"prefix": prefix})
            run.failed.append(NotSwept(prefix, f"{type(exc).__name__}: {exc}"))
            continue
        run.swept.append(Swept(prefix, tenant_id, session_id, reason, objects))


def _delete(
    db: Callable[[], AbstractContextManager[Session]],
    store: ObjectStore,
    prefix: str,
    tenant_id: str,
    session_id: str,
    reason: SweepReason,
) -> int:
    removed = store.delete_prefix(prefix)  # listed again: what was written since the judgement goes too
    with db() as session:
        audit.record(
            session,
            SWEPT_BY,
            "sweep",
            at=utcnow(),
            tenant_id=tenant_id,
            session_id=session_id,
            prefix=prefix,
            reason=reason.value,
            objects_removed=removed,
        )
        session.commit()
    log.info("swept", extra={"prefix": prefix, "session_id": session_id, "reason": reason.value, "objects": removed})
    return removed


def _owners(db: Callable[[], AbstractContextManager[Session]], session_ids: Sequence[str]) -> dict[str, Owner]:
    owners: dict[str, Owner] = {}
    with db() as session:
        for start in range(0, len(session_ids), _LOOKUP_BATCH):
            rows = session.execute(
                select(ExamSession.id, ExamSession.state, Tenant.slug, Exam.external_id)
                .join(Tenant, Tenant.id == ExamSession.tenant_id)
                .join(Exam, Exam.id == ExamSession.exam_id)
                .where(ExamSession.id.in_(session_ids[start : start + _LOOKUP_BATCH]))
            )
            for session_id, state, slug, exam in rows:
                owners[session_id] = Owner(state, f"{slug}/{exam}/{session_id}/")
    return owners


def _last_component(prefix: str) -> str:
    return prefix.rstrip("/").rsplit("/", 1)[-1]


def _names_an_identifier(prefix: str) -> bool:
    """Whether a listed folder can be an exam or a session (`_candidates/` and stray names cannot)."""
    try:
        safe_identifier("prefix", _last_component(prefix))
    except InvalidIdentifier:
        return False
    return True
