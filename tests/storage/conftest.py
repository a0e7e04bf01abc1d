"""The store every storage test works on: the real embedded S3 server, with short retries so that a test of an
outage does not wait long."""

from __future__ import annotations

import pytest

from storage.object_store import ObjectStore, S3Location


@pytest.fixture
def store(s3: S3Location) -> ObjectStore:
    store = ObjectStore(s3, retries=2, backoff_s=0.01)
    store.ensure_bucket()
    return store
