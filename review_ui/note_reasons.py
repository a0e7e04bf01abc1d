"""One-click note reasons: the notes reviewers write most, offered as buttons (and keys 1-9) on a flag.

Each tenant's integrity officers set its list; a tenant that never did gets the defaults. Changing the list
is audited like any other officer action.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from core import audit
from core.tables import Tenant
from review_ui.decisions import Actor, ReviewRefused

DEFAULT_NOTE_REASONS = (
    "phone in view",
    "another person in view",
    "reading notes",
    "left the desk",
    "looking at another screen",
    "camera covered",
    "false alarm: looking at the keyboard",
)
MOST_REASONS = 9  # the keys 1-9
LONGEST_REASON = 80


def note_reasons(tenant: Tenant) -> list[str]:
    return list(tenant.note_reasons) if tenant.note_reasons is not None else list(DEFAULT_NOTE_REASONS)


def parse_note_reasons(text: str) -> list[str]:
    """One reason per line; blank lines and repeats are dropped. Refuses more than 9, or one over 80 characters."""
    reasons = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if len(reasons) > MOST_REASONS:
        raise ReviewRefused(422, f"at most {MOST_REASONS} reasons (one for each key 1-9); this list has {len(reasons)}")
    too_long = [r for r in reasons if len(r) > LONGEST_REASON]
    if too_long:
        raise ReviewRefused(422, f"a reason has at most {LONGEST_REASON} characters: {too_long[0][:40]!r}... is longer")
    return reasons


def set_note_reasons(db: Session, tenant: Tenant, reasons: list[str], actor: Actor, now: datetime) -> None:
    tenant.note_reasons = reasons
    audit.record(db, actor.name, "note_reasons_set", at=now, tenant_id=tenant.id, ip=actor.ip, reasons=reasons)
