"""The append-only audit trail: every view of a recording, every decision and every erasure, with who and when.

Rows are only ever inserted (the database refuses UPDATE and DELETE on the table). Actors are written as
`user:<username>`, `api:<tenant slug>` or `system:<job>`. Every stage appends through `record`: the review
UI its views and decisions, the platform API its reads, `core.erasure` the erasures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.tables import AuditEvent


def record(
    db: Session,
    actor: str,
    action: str,
    *,
    at: datetime,
    tenant_id: str | None = None,
    session_id: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    db.add(
        AuditEvent(at=at, actor=actor, action=action, tenant_id=tenant_id, session_id=session_id, ip=ip, detail=detail)
    )
