"""Per-tenant quotas over real HTTP and real S3, on SQLite and PostgreSQL: a tenant at a limit is refused with
403 `quota_exceeded` and nothing it holds changes, another tenant is not, finishing or deleting sessions frees
the quota, concurrent registrations never share its last slot, an admission far from the limits sums nothing, and
the operator's command shows and sets them."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from typer.testing import CliRunner

from core.tables import AuditEvent, Exam, ExamSession, Media, Tenant, UploadPart
from core.tenants import tenant_usage
from ingest.quotas import Quota, set_own_limits
from proctor.cli import app
from tests.support.platform import MIB, Api, Caller, declare, problem, session_body

runner = CliRunner()


def own_limits(api: Api, tenant_id: str, **limits: int) -> None:
    with api.context.db() as db:
        tenant = db.get(Tenant, tenant_id)
        assert tenant is not None
        set_own_limits(tenant, {Quota(name): limit for name, limit in limits.items()})
        db.commit()


@dataclass(frozen=True)
class Held:
    """Everything stored for one tenant: rows and objects."""

    exams: frozenset[str]
    sessions: dict[str, str]
    media: dict[tuple[str, str], str]
    parts: frozenset[tuple[str, int]]
    uploads: frozenset[str]
    objects: frozenset[str]


def held(api: Api, tenant_id: str) -> Held:
    with api.context.db() as db:
        tenant = db.get(Tenant, tenant_id)
        assert tenant is not None
        sessions = select(ExamSession.id).where(ExamSession.tenant_id == tenant_id)
        media = list(db.scalars(select(Media).where(Media.session_id.in_(sessions))))
        parts = db.execute(
            select(UploadPart.media_id, UploadPart.part_number).where(UploadPart.media_id.in_(m.id for m in media))
        )
        held = Held(
            exams=frozenset(db.scalars(select(Exam.external_id).where(Exam.tenant_id == tenant_id))),
            sessions={s.id: s.state for s in db.scalars(select(ExamSession).where(ExamSession.tenant_id == tenant_id))},
            media={(m.session_id, m.kind): m.state for m in media},
            parts=frozenset((media_id, number) for media_id, number in parts),
            uploads=frozenset(key for key, _ in api.context.store.list_multipart_uploads(f"{tenant.slug}/")),
            objects=frozenset(o.key for o in api.context.store.list_objects(f"{tenant.slug}/")),
        )
    return held


def bounds_hold(api: Api, tenant_id: str) -> None:
    """The bounds the checks keep are never below what the tenant holds (else a quota could be passed)."""
    with api.context.db() as db:
        tenant = db.get(Tenant, tenant_id)
        assert tenant is not None
        exact = tenant_usage(db, tenant_id)
        assert (tenant.in_flight_bytes_bound or 0) >= exact.in_flight_bytes
        assert (tenant.stored_bytes_bound or 0) >= exact.stored_bytes


def refused(response: httpx.Response, quota: str, limit: int, in_use: int, requested: int) -> None:
    assert problem(response) == (403, "quota_exceeded"), response.text
    body = response.json()
    assert body["details"] == {"quota": quota, "limit": limit, "in_use": in_use, "requested": requested}
    assert f"quota {quota}" in body["detail"] and "proctor tenants quota" in body["detail"]


def registered(caller: Caller, *media: dict[str, Any]) -> str:
    response = caller.register(session_body(*media))
    assert response.status_code == 201, response.text
    sid: str = response.json()["id"]
    return sid


def other_tenant(api: Api) -> Caller:
    _, key = api.tenant()
    return Caller(httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120))


def test_open_sessions_past_the_quota_are_refused_until_one_completes_or_is_deleted(
    api: Api, caller: Caller, tenant: tuple[str, str], small_video: Path
) -> None:
    tenant_id = tenant[0]
    own_limits(api, tenant_id, open_sessions=2)
    first_body = session_body(declare("webcam", small_video))
    first = caller.register(first_body, "first").json()["id"]
    second = registered(caller, declare("webcam", small_video))

    before = held(api, tenant_id)
    refused(caller.register(session_body(declare("webcam", small_video), exam_id="exam-new")), "open_sessions", 2, 2, 1)
    assert held(api, tenant_id) == before, "a refusal stores nothing: no exam, session, media or upload"
    assert "exam-new" not in before.exams
    replay = caller.register(first_body, "first")
    assert (replay.status_code, replay.json()["id"]) == (200, first), "a replay is answered, not counted again"
    assert registered(other_tenant(api), declare("webcam", small_video)), "another tenant is not held back"

    assert caller.http.delete(f"/v1/sessions/{first}").status_code == 200
    third = registered(caller, declare("webcam", small_video))
    assert problem(caller.register(session_body(declare("webcam", small_video))))[1] == "quota_exceeded"

    assert caller.upload_whole(second, "webcam", small_video).json()["state"] == "queued"
    assert registered(caller, declare("webcam", small_video)) not in {first, second, third}
    bounds_hold(api, tenant_id)


def test_bytes_in_flight_past_the_quota_are_refused_until_the_upload_completes(
    api: Api, caller: Caller, tenant: tuple[str, str], small_video: Path
) -> None:
    tenant_id, size = tenant[0], small_video.stat().st_size
    own_limits(api, tenant_id, in_flight_bytes=size + size // 2)
    first = registered(caller, declare("webcam", small_video))

    before = held(api, tenant_id)
    refused(
        caller.register(session_body(declare("webcam", small_video))), "in_flight_bytes", size + size // 2, size, size
    )
    assert held(api, tenant_id) == before

    assert caller.upload_whole(first, "webcam", small_video).json()["state"] == "queued"
    registered(caller, declare("webcam", small_video))
    bounds_hold(api, tenant_id)


def test_storage_past_the_quota_is_refused_until_sessions_are_deleted(
    api: Api, caller: Caller, tenant: tuple[str, str], small_video: Path
) -> None:
    tenant_id, size = tenant[0], small_video.stat().st_size
    own_limits(api, tenant_id, storage_bytes=2 * size)
    first = registered(caller, declare("webcam", small_video))
    assert caller.upload_whole(first, "webcam", small_video).json()["state"] == "queued"
    second = registered(caller, declare("webcam", small_video))

    before = held(api, tenant_id)
    refused(caller.register(session_body(declare("webcam", small_video))), "storage_bytes", 2 * size, 2 * size, size)
    photo = {"kind": "enrolment_photo", "size_bytes": 1000, "sha256": "0" * 64, "content_type": "image/jpeg"}
    refused(caller.http.post(f"/v1/sessions/{second}/media", json=photo), "storage_bytes", 2 * size, 2 * size, 1000)
    assert held(api, tenant_id) == before, "no enrolment row, no upload under the candidate"

    assert caller.http.delete(f"/v1/sessions/{first}").status_code == 200
    assert caller.http.post(f"/v1/sessions/{second}/media", json=photo).status_code == 201
    bounds_hold(api, tenant_id)


def test_a_streaming_recording_is_refused_the_part_that_would_pass_the_quota(
    api: Api, caller: Caller, tenant: tuple[str, str]
) -> None:
    tenant_id = tenant[0]
    own_limits(api, tenant_id, in_flight_bytes=7 * MIB)
    streaming = {"kind": "webcam", "content_type": "video/webm", "streaming": True}
    sid = registered(caller, streaming)  # its first part (5 MiB, the part size) fits
    part = b"\x01" * (5 * MIB)
    checksum = {"X-Part-SHA256": hashlib.sha256(part).hexdigest()}
    assert caller.put_part(sid, "webcam", 1, part, **checksum).status_code == 200

    before = held(api, tenant_id)
    refused(caller.put_part(sid, "webcam", 2, part, **checksum), "in_flight_bytes", 7 * MIB, 5 * MIB, 5 * MIB)
    refused(caller.register(session_body(streaming)), "in_flight_bytes", 7 * MIB, 5 * MIB, 5 * MIB)
    assert caller.put_part(sid, "webcam", 1, part, **checksum).status_code == 200, "a stored part's replay passes"
    assert held(api, tenant_id) == before
    listed = caller.http.get(f"/v1/sessions/{sid}/media/webcam/parts").json()
    assert [p["part_number"] for p in listed["received"]] == [1]
    bounds_hold(api, tenant_id)


@pytest.mark.parametrize("quota", ["open_sessions", "in_flight_bytes"])
def test_concurrent_registrations_never_share_the_last_slot(
    api: Api, caller: Caller, tenant: tuple[str, str], small_video: Path, quota: str
) -> None:
    """Eight at once for room for one: exactly one is registered. Without the tenant's row lock (on SQLite, the
    write lock taken before the use is read) each reads the use before any commits, and several pass."""
    tenant_id = tenant[0]
    registered(caller, declare("webcam", small_video))
    own_limits(api, tenant_id, **{quota: 2 if quota == "open_sessions" else 2 * small_video.stat().st_size})
    barrier, results = threading.Barrier(8), []

    def register() -> None:
        barrier.wait()
        results.append(caller.register(session_body(declare("webcam", small_video))))

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(problem(r) for r in results) == [(201, "ok")] + [(403, "quota_exceeded")] * 7
    assert len(held(api, tenant_id).sessions) == 2
    bounds_hold(api, tenant_id)


def test_a_tenant_far_from_its_limits_is_admitted_without_summing_what_it_holds(
    api: Api, caller: Caller, small_video: Path
) -> None:
    """The exact sums grow with a tenant's history (a second for 100,000 files): an admission reads them only where
    the bounds it keeps would refuse. Then the quota is judged exactly, and what was freed counts."""
    registered(caller, declare("webcam", small_video))  # the first admission counts the tenant's bounds
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(api.context.engine, "before_cursor_execute", record)
    try:
        registered(caller, declare("webcam", small_video))
    finally:
        event.remove(api.context.engine, "before_cursor_execute", record)
    assert statements, "the registration ran on this engine"
    assert not [s for s in statements if "sum(" in s.lower()], statements


def test_the_operator_shows_and_sets_a_tenants_quotas(
    api: Api, caller: Caller, tenant: tuple[str, str], small_video: Path
) -> None:
    tenant_id = tenant[0]
    with api.context.db() as db:
        slug = db.get(Tenant, tenant_id).slug  # type: ignore[union-attr]
    settings = api.context.settings
    env = {"PROCTOR_DATA_DIR": str(settings.data_dir), "PROCTOR_DATABASE_URL": settings.resolved_database_url}
    registered(caller, declare("webcam", small_video))

    def cli(*args: str) -> str:
        result = runner.invoke(app, ["tenants", "quota", slug, *args], env=env)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.replace("│", " ").split())

    shown = cli()
    assert "open_sessions 10,000 default 1" in shown and "storage_bytes 1,048,576.00 GiB default 0.00 GiB" in shown
    shown = cli("--open-sessions", "1", "--in-flight-gb", "0.5")
    assert f"open_sessions 1 {slug} 1" in shown and f"in_flight_bytes 0.50 GiB {slug} 0.00 GiB" in shown
    refused(caller.register(session_body(declare("webcam", small_video))), "open_sessions", 1, 1, 1)

    cli("--open-sessions", "2")
    registered(caller, declare("webcam", small_video))
    with api.context.db() as db:
        audited = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "set_tenant_quota", AuditEvent.tenant_id == tenant_id)
            .order_by(AuditEvent.seq)
        ).all()
    assert [e.detail["changes"] for e in audited] == [
        {"open_sessions": [None, 1], "in_flight_bytes": [None, 512 * MIB]},
        {"open_sessions": [1, 2]},
    ]
    assert all(e.actor.startswith("cli:") for e in audited)
    unknown = runner.invoke(app, ["tenants", "quota", "nosuch-tenant"], env=env)
    assert unknown.exit_code == 2 and "no tenant" in unknown.output
