"""The sweeper: what is left under erased sessions, or under prefixes no session owns, goes; nothing of a live
session is ever touched. Against the real S3 server (a versioned bucket of its own where versions matter)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from minio import Minio
from minio.versioningconfig import VersioningConfig
from sqlalchemy import select
from typer.testing import CliRunner

from core.context import AppContext
from core.db import utcnow
from core.erasure_sweep import SWEEP_GRACE, SWEPT_BY, Owner, SweepReason, sweep, sweep_reason
from core.tables import AuditEvent, Exam, ExamSession
from core.tenants import add_tenant
from storage.keys import SessionPrefix
from storage.object_store import ObjectStore, S3Location
from tests.core.test_erasure import cli_environment

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PREFIX = "t/exam-1/s1/"


@pytest.mark.parametrize(
    ("owner", "newest_age", "expected"),
    [
        (Owner("deleted", PREFIX), timedelta(0), SweepReason.ERASED),  # erased: whenever it was written
        (Owner("uploading", PREFIX), timedelta(days=400), None),  # live: never
        (Owner("processing", PREFIX), timedelta(days=400), None),
        (None, SWEEP_GRACE + timedelta(seconds=1), SweepReason.NO_SESSION),
        (None, SWEEP_GRACE - timedelta(seconds=1), None),  # young: its row may be in flight
        (Owner("processed", "other/exam-1/s1/"), SWEEP_GRACE * 2, SweepReason.NO_SESSION),  # not its prefix
        (Owner("deleted", "other/exam-1/s1/"), timedelta(0), None),  # not its prefix, and young
    ],
)
def test_sweep_reason(owner: Owner | None, newest_age: timedelta, expected: SweepReason | None) -> None:
    assert sweep_reason(PREFIX, owner, NOW - newest_age, NOW, SWEEP_GRACE) == expected


def test_nothing_written_is_nothing_to_sweep() -> None:
    assert sweep_reason(PREFIX, None, None, NOW, SWEEP_GRACE) is None


@dataclasses.dataclass(frozen=True)
class Tenancy:
    tenant_id: str
    slug: str

    def session(self, context: AppContext, state: str, *files: str, store: ObjectStore | None = None) -> str:
        """A session row in `state` with `files` stored under its prefix; its prefix."""
        with context.db() as db:
            exam = db.scalar(select(Exam).where(Exam.tenant_id == self.tenant_id))
            if exam is None:
                exam = Exam(tenant_id=self.tenant_id, external_id="exam-1")
                db.add(exam)
                db.flush()
            row = ExamSession(
                tenant_id=self.tenant_id,
                exam_id=exam.id,
                candidate_id="cand-1",
                attempt_id=uuid.uuid4().hex[:8],
                started_at=utcnow(),
                state=state,
            )
            db.add(row)
            db.commit()
            prefix = SessionPrefix(self.slug, "exam-1", row.id).prefix
        for name in files:
            (store or context.store).put_bytes(prefix + name, b"\xff\xd8 bytes of " + name.encode())
        return prefix


@pytest.fixture
def tenancy(context: AppContext) -> Tenancy:
    with context.db() as db:
        tenant = add_tenant(db, f"sw-{uuid.uuid4().hex[:8]}", "sweep test")
        db.commit()
        return Tenancy(tenant.id, tenant.slug)


def keys(store: ObjectStore, prefix: str) -> list[str]:
    return sorted(v.key[len(prefix) :] for v in store.list_versions(prefix))


def test_leftovers_of_erased_sessions_go_and_live_sessions_are_never_touched(
    context: AppContext, tenancy: Tenancy
) -> None:
    store = context.store
    erased = tenancy.session(context, "deleted", "results/r1/evidence/no_face-1000.jpg", "derived/seekable/webcam")
    uploading = tenancy.session(context, "uploading", "media/webcam")
    processing = tenancy.session(context, "processing", "media/webcam", "results/r2/evidence/x.jpg")
    reviewed = tenancy.session(context, "reviewed", "media/webcam")
    orphan = f"{tenancy.slug}/exam-1/{uuid.uuid4().hex}/"  # no row: a database restored from an older backup
    store.put_bytes(orphan + "media/webcam", b"a recording nobody owns")
    enrolment = f"{tenancy.slug}/_candidates/cand-1/enrolment/photo.jpg"  # not a session prefix
    store.put_bytes(enrolment, b"\xff\xd8 a face")

    dry = sweep(context.db, store, utcnow(), dry_run=True, tenants={tenancy.slug})
    assert [(s.prefix, s.reason, s.objects) for s in dry.swept] == [(erased, SweepReason.ERASED, 2)]
    assert keys(store, erased), "a dry run deletes nothing"

    run = sweep(context.db, store, utcnow(), tenants={tenancy.slug})
    assert [(s.prefix, s.reason, s.objects) for s in run.swept] == [(erased, SweepReason.ERASED, 2)]
    assert run.failed == []
    assert keys(store, erased) == []
    assert keys(store, orphan) == ["media/webcam"], "too young to judge without a row"

    later = sweep(context.db, store, utcnow() + SWEEP_GRACE + timedelta(minutes=1), tenants={tenancy.slug})
    assert [(s.prefix, s.reason) for s in later.swept] == [(orphan, SweepReason.NO_SESSION)]
    assert keys(store, orphan) == []
    assert keys(store, uploading) == keys(store, reviewed) == ["media/webcam"]
    assert keys(store, processing) == ["media/webcam", "results/r2/evidence/x.jpg"]
    assert store.stat(enrolment) is not None
    with context.db() as db:
        audited = db.scalars(
            select(AuditEvent).where(AuditEvent.tenant_id == tenancy.tenant_id, AuditEvent.action == "sweep")
        ).all()
    assert [(a.actor, a.detail["prefix"], a.detail["reason"], a.detail["objects_removed"]) for a in audited] == [
        (SWEPT_BY, erased, "erased", 2),
        (SWEPT_BY, orphan, "no_session", 1),
    ]


def test_a_versioned_bucket_is_swept_of_every_version(context: AppContext, s3: S3Location, tenancy: Tenancy) -> None:
    """What an erasure on a versioned bucket used to leave: the data under a delete marker, readable by version."""
    admin = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False)
    bucket = f"sweep-versioned-{uuid.uuid4().hex[:8]}"
    admin.make_bucket(bucket)
    admin.set_bucket_versioning(bucket, VersioningConfig("Enabled"))
    store = ObjectStore(dataclasses.replace(s3, bucket=bucket), retries=2, backoff_s=0.01)
    erased = tenancy.session(context, "deleted", "media/webcam", "results/r1/evidence/a.jpg", store=store)
    for key in ("media/webcam", "results/r1/evidence/a.jpg"):
        admin.remove_object(bucket, erased + key)  # a plain DELETE, as erasure used to send
    assert [o.object_name for o in admin.list_objects(bucket, erased, recursive=True)] == []
    assert len(store.list_versions(erased)) == 4

    run = sweep(context.db, store, utcnow(), tenants={tenancy.slug})
    assert [(s.prefix, s.objects) for s in run.swept] == [(erased, 2)]
    assert list(admin.list_objects(bucket, erased, recursive=True, include_version=True)) == []


def test_a_prefix_that_cannot_be_swept_does_not_stop_the_others(
    context: AppContext, tenancy: Tenancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tenancy.session(context, "deleted", "a.jpg")
    second = tenancy.session(context, "deleted", "b.jpg")
    delete_prefix = ObjectStore.delete_prefix

    def refusing(store: ObjectStore, prefix: str) -> int:
        if prefix == first:
            raise PermissionError(f"AccessDenied deleting {prefix}")
        return delete_prefix(store, prefix)

    monkeypatch.setattr(ObjectStore, "delete_prefix", refusing)
    run = sweep(context.db, context.store, utcnow(), tenants={tenancy.slug})
    assert [s.prefix for s in run.swept] == [second]
    assert [(f.prefix, "AccessDenied" in f.error) for f in run.failed] == [(first, True)]
    assert keys(context.store, first) == ["a.jpg"] and keys(context.store, second) == []


def test_proctor_retention_sweeps_and_sweep_only_needs_no_period(
    context: AppContext, s3: S3Location, tenancy: Tenancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proctor.cli import app

    cli_environment(context, s3, monkeypatch)
    erased = tenancy.session(context, "deleted", "results/r1/evidence/no_face-1000.jpg")
    live = tenancy.session(context, "uploading", "media/webcam")

    dry = CliRunner().invoke(app, ["retention", "--sweep-only", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would sweep 1 object(s) under {erased} (erased)" in dry.stdout and keys(context.store, erased)
    ran = CliRunner().invoke(app, ["retention", "--sweep-only"])
    assert ran.exit_code == 0, ran.output
    assert f"swept 1 object(s) under {erased} (erased)" in ran.stdout and "retention period" not in ran.stdout
    assert keys(context.store, erased) == [] and keys(context.store, live) == ["media/webcam"]

    again = tenancy.session(context, "deleted", "results/r2/signals.npz")
    daily = CliRunner().invoke(app, ["retention", "--days", "30"])
    assert daily.exit_code == 0, daily.output
    assert "past the 30-day retention period" in daily.stdout and f"under {again} (erased)" in daily.stdout
    assert keys(context.store, again) == []
