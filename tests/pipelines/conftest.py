"""What the fan-out tests share: a local Ray cluster of two CPUs per module, and recordings stored in the real
embedded S3 server under a fresh session prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.object_store import ObjectStore, S3Location

RAY_CPUS = 2  # the local cluster's; each actor holds one


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def stored_recording(s3: S3Location, path: Path, tenant: str) -> str:
    """Store `path` as a webcam recording of a new session of `tenant`; returns its key."""
    store = ObjectStore(s3)
    store.ensure_bucket()
    key = f"{tenant}/e/{uuid.uuid4().hex}/media/webcam"
    with path.open("rb") as f:
        store.put_file(key, f, path.stat().st_size)
    return key
