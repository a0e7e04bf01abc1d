"""The upload service itself (no HTTP): job attempts, races between completes, retries and erasure meanwhile."""

from __future__ import annotations

import contextlib
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from core.context import AppContext, build_context
from core.settings import Settings
from core.tables import ExamSession, Job, Media
from core.tenants import add_tenant
from ingest import completion as upload_module
from ingest.schemas import IngestError, SessionCreate
from ingest.uploads import Uploads
from proctor import wiring
from storage.object_store import ObjectStoreError, S3Location
from tests.support.platform import declare, session_body


def parts_stored(
    context: AppContext, uploads: Uploads, video: Path, kinds: tuple[str, ...] = ("webcam",)
) -> tuple[str, str]:
    """A new tenant's session with every part of ``kinds`` (one-part files) stored: (tenant id, session id)."""
    with context.db() as db:
        tenant_id = add_tenant(db, f"t-{uuid.uuid4().hex[:10]}", "test platform").id
        db.commit()
    body = SessionCreate.model_validate(session_body(*(declare(kind, video) for kind in kinds)))
    session, _ = uploads.register(tenant_id, body, None)
    for kind in kinds:
        uploads.store_part(tenant_id, session.id, kind, 1, video.read_bytes(), None)
    return tenant_id, session.id


def test_the_processing_job_takes_the_configured_attempts(
    settings: Settings, s3: S3Location, small_video: Path
) -> None:
    """PROCTOR_JOB_MAX_ATTEMPTS applies to the job a completed upload queues, not only to re-queued ones."""
    context = build_context(settings.model_copy(update={"job_max_attempts": 5}), s3)
    uploads = wiring.uploads(context)
    try:
        tenant_id, session_id = parts_stored(context, uploads, small_video)
        assert uploads.complete(tenant_id, session_id, "webcam").state == "queued"
        with context.db() as db:
            assert db.scalars(select(Job.max_attempts).where(Job.session_id == session_id)).all() == [5]
    finally:
        context.close()


def test_two_media_completing_at_once_queue_the_session_once(
    context: AppContext, uploads: Uploads, small_video: Path, database_url: str
) -> None:
    """Webcam and screen completed in parallel: each request's last step must see the other's media, so the
    session is queued exactly once (under READ COMMITTED each saw the other as unfinished and none queued)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: the interleaving cannot happen there")
    tenant_id, session_id = parts_stored(context, uploads, small_video, ("webcam", "screen"))
    both_flushed = threading.Barrier(2, timeout=5)

    def wait_for_the_other(session: Session, _: object) -> None:
        if any(isinstance(o, Media) and o.state == "complete" for o in session.dirty):
            with contextlib.suppress(threading.BrokenBarrierError):
                both_flushed.wait()

    states: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda k=kind: states.update({k: uploads.complete(tenant_id, session_id, k).state}))
        for kind in ("webcam", "screen")
    ]
    event.listen(Session, "after_flush", wait_for_the_other)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        event.remove(Session, "after_flush", wait_for_the_other)
    assert sorted(states.values()) == ["queued", "uploading"]
    with context.db() as db:
        assert db.scalars(select(Job.state).where(Job.session_id == session_id)).all() == ["queued"]
        row = db.get(ExamSession, session_id)
        assert row is not None and row.state == "queued"


def test_a_complete_that_failed_after_assembling_can_be_retried(
    context: AppContext, uploads: Uploads, small_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 lists no parts once an upload is assembled: a complete that failed after that step (storage read
    error during the probe) must not leave the media asking for parts that can never be sent again."""
    tenant_id, session_id = parts_stored(context, uploads, small_video)
    probe = upload_module.probe_video

    def storage_hiccup(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(upload_module, "probe_video", probe)
        raise ObjectStoreError("S3 read timed out")

    monkeypatch.setattr(upload_module, "probe_video", storage_hiccup)
    with pytest.raises(ObjectStoreError):
        uploads.complete(tenant_id, session_id, "webcam")
    assert uploads.complete(tenant_id, session_id, "webcam").state == "queued"


@pytest.mark.parametrize("erased", ["before the probe", "after the probe"])
def test_a_session_erased_while_its_upload_is_verified_answers_gone(
    context: AppContext, uploads: Uploads, small_video: Path, monkeypatch: pytest.MonkeyPatch, erased: str
) -> None:
    tenant_id, session_id = parts_stored(context, uploads, small_video)
    probe = upload_module.probe_video

    def erased_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if erased == "before the probe":  # the probe then reads an object that is gone
            uploads.delete(tenant_id, session_id)
        probed = probe(*args, **kwargs)
        if erased == "after the probe":  # then the last step finds the session deleted
            uploads.delete(tenant_id, session_id)
        return probed

    monkeypatch.setattr(upload_module, "probe_video", erased_meanwhile)
    with pytest.raises(IngestError) as refused:
        uploads.complete(tenant_id, session_id, "webcam")
    assert (refused.value.status, refused.value.code) == (410, "session_deleted")
    assert uploads.get(tenant_id, session_id).state == "deleted"
