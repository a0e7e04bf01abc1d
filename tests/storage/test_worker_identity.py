"""The job workers' own S3 identity on the real embedded SeaweedFS: a processing job does all it needs with it (reads
recordings, writes and replaces results, evidence and seekable copies, lists, deletes its own runs), and nothing
more: no recording replaced or deleted, no bucket made, removed or reconfigured.

This module runs its own server (`s3` below overrides the session's), so that the platform API uploads with the
service identity and the worker processes with the worker identity of the same server.
"""

from __future__ import annotations

import io
import json
import stat
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from minio.versioningconfig import VersioningConfig
from sqlalchemy import select

from core.settings import Settings
from core.tables import ExamSession, FlagSegment
from ingest.client import upload_session
from pipelines.analysis import AnalysisConfig
from pipelines.fanout import LocalFanout
from pipelines.process import process_session
from proctor import wiring
from proctor.samples import SampleSession, build_sample_session
from storage.embedded_s3 import EmbeddedS3, EmbeddedS3Error, S3Identity, s3_location, worker_actions
from storage.keys import SessionPrefix
from storage.object_store import ObjectStore, ObjectStoreError, S3Location
from tests.support.platform import Api

BUCKET = "proctor-scoped"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scoped-s3")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[EmbeddedS3]:
    embedded = EmbeddedS3(data_dir, BUCKET)
    with embedded:
        yield embedded


@pytest.fixture(scope="module")
def s3(server: EmbeddedS3) -> S3Location:
    """The service identity: the shared fixtures (`context`, `api`) run on this module's server with it."""
    assert server.location is not None
    return server.location


@pytest.fixture(scope="module")
def worker(server: EmbeddedS3) -> S3Location:
    assert server.worker_location is not None
    return server.worker_location


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: what is checked here is the object store's identities, not the database."""
    return f"sqlite:///{tmp_path / 'proctor.db'}"


@pytest.fixture
def worker_store(worker: S3Location) -> ObjectStore:
    store = ObjectStore(worker, retries=1, backoff_s=0.01)
    store.ensure_bucket()  # as `build_context` does: the bucket exists (the server made it), so nothing is refused
    return store


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleSession:
    return build_sample_session(tmp_path_factory.mktemp("sample"), duration_s=36, seed=5, with_events=False)


def _raw(location: S3Location) -> Minio:
    return Minio(location.endpoint, location.access_key, location.secret_key, secure=False, region=location.region)


def _refused(call: Callable[[], object]) -> str | None:
    """The S3 error code `call` is answered with."""
    with pytest.raises(S3Error) as refused:
        call()
    return refused.value.code


class _Refused(RuntimeError):
    """What a worker whose lease lapsed meets at publication (`JobQueue.complete` raises `LeaseLost`)."""


def _refuse(_db: object) -> None:
    raise _Refused("the job was taken over")


def test_a_processing_job_runs_with_the_worker_identity(
    api: Api, sample: SampleSession, worker: S3Location, worker_store: ObjectStore
) -> None:
    _, key = api.tenant()
    with api.client(key) as client:
        sid = upload_session(client, webcam=sample.video_path, exam_id="exam-scoped", candidate_id="c")["id"]
    ctx = api.context
    fanout = LocalFanout(AnalysisConfig(), worker)  # the recording read through URLs the worker's keys sign

    first = process_session(ctx.db, worker_store, fanout, sid, chunk_target_ms=12_000)
    with ctx.db() as db:
        row = db.get(ExamSession, sid)
        assert row is not None and row.results_prefix == first.results_prefix
        evidence = [
            k for s in db.scalars(select(FlagSegment).where(FlagSegment.session_id == sid)) for k in s.evidence_keys
        ]
        prefix = SessionPrefix(row.tenant.slug, row.exam.external_id, sid)
    written = {o.key.removeprefix(first.results_prefix) for o in worker_store.list_objects(first.results_prefix)}
    assert {"signals.npz", "segments.json", "thumbnails.jpg"} <= written
    assert evidence and all(k.startswith(first.results_prefix + "evidence/") for k in evidence)

    with pytest.raises(_Refused):  # a fenced-out run: what it wrote is deleted, the published run stays
        process_session(ctx.db, worker_store, fanout, sid, chunk_target_ms=12_000, on_publish=_refuse)
    results_root = prefix.key("results") + "/"
    runs = {o.key[len(results_root) :].split("/")[1] for o in worker_store.list_objects(results_root)}
    assert runs == {first.results_prefix.split("/")[-2]}

    second = process_session(ctx.db, worker_store, fanout, sid, chunk_target_ms=12_000)
    assert list(worker_store.list_objects(first.results_prefix)) == [], "the replaced run was deleted"
    assert list(worker_store.list_objects(second.results_prefix))

    # A seekable copy (`pipelines.remux`): a multipart upload under `derived/`, replaced and deleted again.
    seekable = prefix.seekable_key("webcam")
    body = b"\x1a\x45\xdf\xa3" + bytes(6 * 1024 * 1024)
    stored = worker_store.put_file(seekable, io.BytesIO(body), len(body), part_size=5 * 1024 * 1024)
    assert stored.size == len(body) and worker_store.read_range(seekable, 0, 4) == body[:4]
    worker_store.delete(seekable)
    assert worker_store.stat(seekable) is None


def test_the_worker_identity_reads_every_tenant_but_cannot_replace_or_delete_a_recording(
    s3: S3Location, worker_store: ObjectStore
) -> None:
    service = ObjectStore(s3, retries=1, backoff_s=0.01)
    recordings = [f"t-{uuid.uuid4().hex[:8]}/exam-1/s-1/media/webcam" for _ in range(2)]
    recordings.append(f"t-{uuid.uuid4().hex[:8]}/results/s-1/media/webcam")  # an exam called "results"
    for recording in recordings:
        service.put_bytes(recording, b"the candidate's recording")
        assert worker_store.read_range(recording, 0, 100) == b"the candidate's recording"
        assert _refused(partial(worker_store.put_bytes, recording, b"forged", overwrite=True)) == "AccessDenied"
        with pytest.raises(ObjectStoreError, match="AccessDenied"):
            worker_store.delete(recording)
        assert service.read_range(recording, 0, 100) == b"the candidate's recording"
    outside = f"t-{uuid.uuid4().hex[:8]}/exam-1/s-1/events"
    assert _refused(partial(worker_store.put_bytes, outside, b"{}")) == "AccessDenied"


def test_the_worker_identity_cannot_administer_buckets(s3: S3Location, worker: S3Location) -> None:
    admin, client = _raw(s3), _raw(worker)
    public = {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{BUCKET}/*"]}
    expire = LifecycleConfig(
        [Rule(ENABLED, rule_filter=Filter(prefix=""), rule_id="all", expiration=Expiration(days=1))]
    )
    refusals = {
        "make a bucket": lambda: client.make_bucket(f"other-{uuid.uuid4().hex[:8]}"),
        "remove the bucket": lambda: client.remove_bucket(BUCKET),
        "set a bucket policy": lambda: client.set_bucket_policy(
            BUCKET, json.dumps({"Version": "2012-10-17", "Statement": [public]})
        ),
        "delete the bucket policy": lambda: client.delete_bucket_policy(BUCKET),
        "turn versioning on": lambda: client.set_bucket_versioning(BUCKET, VersioningConfig(ENABLED)),
        "set a lifecycle": lambda: client.set_bucket_lifecycle(BUCKET, expire),
    }
    codes = {what: _refused(call) for what, call in refusals.items()}
    assert codes == dict.fromkeys(refusals, "AccessDenied")
    assert admin.bucket_exists(BUCKET) and admin.get_bucket_versioning(BUCKET).status != ENABLED


def test_each_identity_has_its_own_keys_kept_private(data_dir: Path, s3: S3Location, worker: S3Location) -> None:
    root = data_dir / "s3"
    for name in ("credentials.json", "worker-credentials.json", "s3-identities.json"):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o600, name
    assert worker.access_key != s3.access_key and worker.secret_key != s3.secret_key
    identities = {i["name"]: i for i in json.loads((root / "s3-identities.json").read_text())["identities"]}
    assert identities[S3Identity.WORKER]["actions"] == worker_actions(BUCKET)
    assert identities[S3Identity.WORKER]["credentials"] == [
        {"accessKey": worker.access_key, "secretKey": worker.secret_key}
    ]
    assert "Admin" in identities[S3Identity.SERVICE]["actions"]


def test_a_worker_process_on_the_same_data_directory_gets_the_worker_identity(
    data_dir: Path, s3: S3Location, worker: S3Location
) -> None:
    """`proctor worker` beside a `proctor serve` that started the embedded server."""
    with s3_location(None, data_dir, BUCKET, identity=S3Identity.WORKER) as found:
        assert found == worker
    with s3_location(None, data_dir, BUCKET) as found:
        assert found == s3
    settings = Settings(data_dir=data_dir, s3_bucket=BUCKET, _env_file=None)  # type: ignore[call-arg]
    with wiring.worker_s3(settings) as found:
        assert found == worker
    with (
        pytest.raises(EmbeddedS3Error, match="same PROCTOR_S3_BUCKET"),
        s3_location(None, data_dir, "another-bucket", identity=S3Identity.WORKER),
    ):
        pass
