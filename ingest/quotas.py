"""Per-tenant quotas: how many sessions a tenant has open, how many bytes it has in flight, how many it stores.

One platform, buggy or hostile, must not fill the object store or the database for every other: each tenant may
hold at most so many open sessions (registered, recordings not all uploaded), bytes in flight (files not yet
complete) and bytes stored (the media of its sessions not erased, those in flight included, so that completing
an upload never takes it past the quota). `core.tenants.TenantUsage` says how each is counted. The limits are the
server's defaults (`PROCTOR_QUOTA_*`), or the tenant's own where the operator set them
(`proctor tenants quota SLUG`).

They are checked where work is accepted, under the tenant's row lock (`core.tenants.lock_tenant`) so that two
requests never share a quota's last slot: registering a session (one more open session, and its files' declared
bytes; a streaming file's first part, so that a recorder is refused before its exam rather than at its first
part), adding an enrolment file (its bytes), and storing a new part of a streaming file, whose size is unknown
until complete (`admit_part`). A declared file's bytes were counted when it was declared, so its parts, through
the API or presigned, are never refused by a quota. A quota lowered below what a tenant holds refuses new work
only: nothing accepted is undone. `quota_verdict` is the pure rule; `admit` reads and counts (see why it keeps
bounds rather than summing every time).

The refusal is 403 `quota_exceeded`, not 429: waiting changes nothing, the tenant must finish or erase sessions,
or have the operator raise the quota; and clients do not retry a 403 (RFC 9110: not with the same credentials),
where they would retry a 429 or a 507. Not 409, which this API keeps for a conflict with one resource's state
(`part_conflict`, `attempt_already_registered`), nor 413, which names a request too large in itself. Nothing
stored changes on a refusal: it comes before any row is committed or any object written.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from core.tables import Media, Tenant, UploadPart
from core.tenants import TenantUsage, lock_tenant, tenant_usage
from ingest.schemas import IngestError

log = logging.getLogger(__name__)

GIB = 1024**3


class Quota(StrEnum):
    OPEN_SESSIONS = "open_sessions"
    IN_FLIGHT_BYTES = "in_flight_bytes"
    STORAGE_BYTES = "storage_bytes"


@dataclass(frozen=True)
class QuotaLimits:
    """The most a tenant may hold of each quota."""

    open_sessions: int
    in_flight_bytes: int
    storage_bytes: int

    def of(self, tenant: Tenant) -> QuotaLimits:
        """`tenant`'s limits: its own where the operator set them, these defaults otherwise."""
        return QuotaLimits(
            self.open_sessions if tenant.quota_open_sessions is None else tenant.quota_open_sessions,
            self.in_flight_bytes if tenant.quota_in_flight_bytes is None else tenant.quota_in_flight_bytes,
            self.storage_bytes if tenant.quota_storage_bytes is None else tenant.quota_storage_bytes,
        )


@dataclass(frozen=True)
class Demand:
    """What one request would add: sessions, and bytes (in flight and stored alike)."""

    sessions: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class QuotaExceeded:
    quota: Quota
    limit: int
    in_use: int
    requested: int


def quota_verdict(usage: TenantUsage, limits: QuotaLimits, demand: Demand) -> QuotaExceeded | None:
    """The first quota that `demand` would take past its limit, or None when it fits. A request that adds nothing
    to a quota is never refused by it, however far over its limit the tenant already is."""
    for quota, in_use, limit, requested in (
        (Quota.OPEN_SESSIONS, usage.open_sessions, limits.open_sessions, demand.sessions),
        (Quota.IN_FLIGHT_BYTES, usage.in_flight_bytes, limits.in_flight_bytes, demand.bytes),
        (Quota.STORAGE_BYTES, usage.stored_bytes, limits.storage_bytes, demand.bytes),
    ):
        if requested > 0 and in_use + requested > limit:
            return QuotaExceeded(quota, limit, in_use, requested)
    return None


def _gib(size: int) -> str:
    return f"{size / GIB:,.2f} GiB ({size:,} bytes)"


def quota_refusal(slug: str, exceeded: QuotaExceeded) -> IngestError:
    """The 403 `quota_exceeded` problem: which quota, its limit, the tenant's use, and what to do."""
    raise_it = f"or ask the proctoring service's operator to raise it (`proctor tenants quota {slug} --"
    if exceeded.quota is Quota.OPEN_SESSIONS:
        held = f"{exceeded.in_use:,} open sessions, and its limit is {exceeded.limit:,}"
        advice = (
            "complete the uploads of the open ones, or delete those that will never finish (DELETE "
            f"/v1/sessions/{{id}}), {raise_it}open-sessions N`)"
        )
    elif exceeded.quota is Quota.IN_FLIGHT_BYTES:
        held = f"{_gib(exceeded.in_use)} in uploads not yet complete, and its limit is {_gib(exceeded.limit)}"
        advice = (
            f"complete those uploads or delete their sessions (DELETE /v1/sessions/{{id}}), {raise_it}in-flight-gb X`)"
        )
    else:
        held = f"{_gib(exceeded.in_use)} stored for its sessions, and its limit is {_gib(exceeded.limit)}"
        advice = f"delete sessions no longer needed (DELETE /v1/sessions/{{id}}), {raise_it}storage-gb X`)"
    wanted = f"{exceeded.requested:,} more" if exceeded.quota is Quota.OPEN_SESSIONS else _gib(exceeded.requested)
    return IngestError(
        403,
        "quota_exceeded",
        f"quota {exceeded.quota} of tenant {slug!r} is used up: it holds {held}; this request needs {wanted}. "
        f"Waiting will not help: {advice}",
        asdict(exceeded),
    )


# -- admission: the thin layer that reads, locks and counts ------------------------------------------------------
def admit(db: Session, tenant: Tenant, defaults: QuotaLimits, demand: Demand, open_sessions: int = 0) -> None:
    """Refuse `demand` past one of `tenant`'s quotas (403 `quota_exceeded`), or count it in the tenant's bounds,
    which commit with the work admitted. The caller holds the tenant's row lock (`core.tenants.lock_tenant`) and,
    for a demand of sessions, counted its open ones under that lock (`open_sessions`).

    Bytes are judged against the tenant's bounds (`in_flight_bytes_bound`, `stored_bytes_bound`): raised by every
    admission and never lowered by completes or erasures (whose code need not know of quotas), they are at least
    what the tenant holds. Only where they would refuse are the exact sums read (`core.tenants.tenant_usage`, which
    grows with the tenant's history), and the bounds set to them: a tenant far from its limits costs one locked row
    per admission, and a completed or erased session frees its share at the first check that needs it. A refusal of
    bytes reads the exact sums each time; clients do not retry one."""
    limits = defaults.of(tenant)
    in_flight, stored = tenant.in_flight_bytes_bound, tenant.stored_bytes_bound
    usage = None if in_flight is None or stored is None else TenantUsage(open_sessions, in_flight, stored)
    exceeded = None if usage is None else quota_verdict(usage, limits, demand)
    if usage is None or (exceeded is not None and exceeded.quota is not Quota.OPEN_SESSIONS):
        exact = tenant_usage(db, tenant.id)
        usage = TenantUsage(open_sessions, exact.in_flight_bytes, exact.stored_bytes)
        exceeded = quota_verdict(usage, limits, demand)
    if exceeded is not None:
        log.warning("quota exceeded", extra={"tenant_id": tenant.id, **asdict(exceeded)})
        raise quota_refusal(tenant.slug, exceeded)
    tenant.in_flight_bytes_bound = usage.in_flight_bytes + demand.bytes
    tenant.stored_bytes_bound = usage.stored_bytes + demand.bytes


def admit_part(db: Session, media: Media, part_number: int, size: int, defaults: QuotaLimits) -> None:
    """Admit a streaming file's new part: its bytes go in flight. A part number already claimed adds nothing (a
    replay of the same bytes, or other bytes, refused as a conflict). The tenant's row stays locked until the
    caller commits the part's claim, a moment later."""
    if db.get(UploadPart, (media.id, part_number)) is not None:
        return
    tenant = lock_tenant(db, media.session.tenant_id)
    assert tenant is not None, "the tenant of a session is never deleted apart from it"
    admit(db, tenant, defaults, Demand(bytes=size))


@dataclass(frozen=True)
class QuotaStanding:
    """One quota of a tenant as an operator reads it: its limit, whether the tenant's own, and what it holds."""

    quota: Quota
    limit: int
    own: bool
    in_use: int


def _own_limits(tenant: Tenant) -> dict[Quota, int | None]:
    return {
        Quota.OPEN_SESSIONS: tenant.quota_open_sessions,
        Quota.IN_FLIGHT_BYTES: tenant.quota_in_flight_bytes,
        Quota.STORAGE_BYTES: tenant.quota_storage_bytes,
    }


def quota_standings(tenant: Tenant, defaults: QuotaLimits, usage: TenantUsage) -> list[QuotaStanding]:
    limits, own = defaults.of(tenant), _own_limits(tenant)
    held = {
        Quota.OPEN_SESSIONS: (limits.open_sessions, usage.open_sessions),
        Quota.IN_FLIGHT_BYTES: (limits.in_flight_bytes, usage.in_flight_bytes),
        Quota.STORAGE_BYTES: (limits.storage_bytes, usage.stored_bytes),
    }
    return [QuotaStanding(quota, limit, own[quota] is not None, in_use) for quota, (limit, in_use) in held.items()]


def set_own_limits(tenant: Tenant, limits: dict[Quota, int]) -> dict[str, list[int | None]]:
    """Give `tenant` its own limits; returns each one that changed as [its own limit before (None: it had the
    default), the new one], for the audit trail."""
    changed: dict[str, list[int | None]] = {}
    for quota, limit in limits.items():
        before = _own_limits(tenant)[quota]
        if before != limit:
            setattr(tenant, f"quota_{quota.value}", limit)
            changed[quota.value] = [before, limit]
    return changed
