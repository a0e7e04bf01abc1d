"""The quota verdicts as tables (usage and limits in, the exceeded quota or None out), the refusal a platform
reads, a tenant's own limits over the server's defaults, and the migration that adds them."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from core.db import migrate
from core.tables import Tenant
from core.tenants import TenantUsage
from ingest.quotas import (
    GIB,
    Demand,
    Quota,
    QuotaExceeded,
    QuotaLimits,
    QuotaStanding,
    quota_refusal,
    quota_standings,
    quota_verdict,
    set_own_limits,
)
from tests.core.test_migrations import alembic_config, seed_an_old_session

LIMITS = QuotaLimits(open_sessions=10, in_flight_bytes=100, storage_bytes=1000)


@pytest.mark.parametrize(
    ("usage", "demand", "exceeded"),
    [
        # open sessions: the last slot is taken, the one past it refused
        (TenantUsage(9, 0, 0), Demand(sessions=1), None),
        (TenantUsage(10, 0, 0), Demand(sessions=1), QuotaExceeded(Quota.OPEN_SESSIONS, 10, 10, 1)),
        # bytes in flight: up to the limit exactly, not a byte more
        (TenantUsage(0, 60, 60), Demand(bytes=40), None),
        (TenantUsage(0, 60, 60), Demand(bytes=41), QuotaExceeded(Quota.IN_FLIGHT_BYTES, 100, 60, 41)),
        # storage counts what is stored besides what is in flight
        (TenantUsage(0, 0, 990), Demand(bytes=10), None),
        (TenantUsage(0, 0, 990), Demand(bytes=11), QuotaExceeded(Quota.STORAGE_BYTES, 1000, 990, 11)),
        # one request larger than the whole quota, on an empty tenant
        (TenantUsage(0, 0, 0), Demand(bytes=101), QuotaExceeded(Quota.IN_FLIGHT_BYTES, 100, 0, 101)),
        # a registration is refused on the first quota it exceeds, sessions before bytes
        (TenantUsage(10, 100, 1000), Demand(1, 1), QuotaExceeded(Quota.OPEN_SESSIONS, 10, 10, 1)),
        (TenantUsage(3, 100, 100), Demand(1, 1), QuotaExceeded(Quota.IN_FLIGHT_BYTES, 100, 100, 1)),
        # a request that adds nothing to a quota passes it, even one already over (lowered by the operator)
        (TenantUsage(50, 500, 5000), Demand(), None),
        (TenantUsage(50, 0, 0), Demand(bytes=10), None),
        (TenantUsage(0, 500, 500), Demand(sessions=1), None),
    ],
)
def test_the_verdict_names_the_first_quota_a_demand_exceeds(
    usage: TenantUsage, demand: Demand, exceeded: QuotaExceeded | None
) -> None:
    assert quota_verdict(usage, LIMITS, demand) == exceeded


@pytest.mark.parametrize(
    ("limits", "usage", "demand", "refused"),
    [
        (QuotaLimits(0, 100, 100), TenantUsage(0, 0, 0), Demand(sessions=1), Quota.OPEN_SESSIONS),  # suspended
        (QuotaLimits(10, 0, 100), TenantUsage(0, 0, 0), Demand(bytes=1), Quota.IN_FLIGHT_BYTES),
        (QuotaLimits(10, 100, 0), TenantUsage(0, 0, 0), Demand(bytes=1), Quota.STORAGE_BYTES),
        (QuotaLimits(0, 0, 0), TenantUsage(0, 0, 0), Demand(), None),
    ],
)
def test_a_zero_limit_refuses_all_of_that_quota_and_nothing_else(
    limits: QuotaLimits, usage: TenantUsage, demand: Demand, refused: Quota | None
) -> None:
    verdict = quota_verdict(usage, limits, demand)
    assert (verdict.quota if verdict else None) == refused


@pytest.mark.parametrize(
    ("exceeded", "says"),
    [
        (
            QuotaExceeded(Quota.OPEN_SESSIONS, 200, 200, 1),
            ["200 open sessions", "limit is 200", "DELETE /v1/sessions/{id}", "proctor tenants quota acme --open-"],
        ),
        (
            QuotaExceeded(Quota.IN_FLIGHT_BYTES, 10 * GIB, 9 * GIB, 2 * GIB),
            ["9.00 GiB", "limit is 10.00 GiB", "2.00 GiB", "complete those uploads", "--in-flight-gb"],
        ),
        (
            QuotaExceeded(Quota.STORAGE_BYTES, 5 * GIB, 5 * GIB, 1),
            ["5.00 GiB (5,368,709,120 bytes) stored", "delete sessions no longer needed", "--storage-gb"],
        ),
    ],
)
def test_the_refusal_names_the_quota_its_limit_the_use_and_what_to_do(exceeded: QuotaExceeded, says: list[str]) -> None:
    refusal = quota_refusal("acme", exceeded)
    assert (refusal.status, refusal.code) == (403, "quota_exceeded")
    assert f"quota {exceeded.quota.value} of tenant 'acme'" in refusal.message
    assert "Waiting will not help" in refusal.message
    for words in says:
        assert words in refusal.message
    assert refusal.details == {
        "quota": exceeded.quota.value,
        "limit": exceeded.limit,
        "in_use": exceeded.in_use,
        "requested": exceeded.requested,
    }


def test_a_tenants_own_limits_replace_the_defaults_one_by_one() -> None:
    tenant = Tenant(slug="acme", name="Acme", quota_in_flight_bytes=7)
    assert LIMITS.of(tenant) == QuotaLimits(open_sessions=10, in_flight_bytes=7, storage_bytes=1000)
    assert quota_standings(tenant, LIMITS, TenantUsage(2, 3, 4)) == [
        QuotaStanding(Quota.OPEN_SESSIONS, 10, own=False, in_use=2),
        QuotaStanding(Quota.IN_FLIGHT_BYTES, 7, own=True, in_use=3),
        QuotaStanding(Quota.STORAGE_BYTES, 1000, own=False, in_use=4),
    ]


def test_setting_own_limits_reports_only_what_changed() -> None:
    tenant = Tenant(slug="acme", name="Acme", quota_in_flight_bytes=7)
    changed = set_own_limits(tenant, {Quota.OPEN_SESSIONS: 3, Quota.IN_FLIGHT_BYTES: 7, Quota.STORAGE_BYTES: 0})
    assert changed == {"open_sessions": [None, 3], "storage_bytes": [None, 0]}
    assert LIMITS.of(tenant) == QuotaLimits(open_sessions=3, in_flight_bytes=7, storage_bytes=0)
    assert set_own_limits(tenant, {Quota.OPEN_SESSIONS: 3}) == {}


def test_the_quota_migration_keeps_tenants_on_the_defaults_and_goes_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0012")
    engine = create_engine(url)
    with engine.begin() as conn:
        seed_an_old_session(conn, "uploading", with_chunks_done=True)
    migrate(url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT slug, quota_open_sessions, quota_in_flight_bytes, quota_storage_bytes, in_flight_bytes_bound, "
                "stored_bytes_bound FROM tenants"
            )
        ).one()
        assert tuple(row) == ("t", None, None, None, None, None), "the defaults, and bounds counted at first use"
        assert conn.execute(text("SELECT state FROM sessions")).scalar() == "uploading"
    command.downgrade(config, "0012")
    with engine.connect() as conn:
        assert "quota_open_sessions" not in {c["name"] for c in inspect(conn).get_columns("tenants")}
        assert conn.execute(text("SELECT slug FROM tenants")).scalar() == "t"
    engine.dispose()
