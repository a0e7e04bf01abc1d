"""What the fan-out counts as the infrastructure failing (waited out, the pool rebuilt) rather than the recording,
and how long it pauses between tries. The faults themselves, on a real cluster, are in `test_cluster.py`."""

from __future__ import annotations

import pickle

import grpc
import pytest
from ray.exceptions import ActorDiedError, NodeDiedError, ObjectLostError, RayTaskError, WorkerCrashedError

from pipelines.decode import Chunk, DecodeError
from pipelines.fanout import (
    ChunkFailed,
    RayOptions,
    StorageUnreachable,
    heal_delay_s,
    infrastructure_failure,
)
from storage.object_store import ObjectNotFound, StorageUnavailable


def as_task_error(cause: Exception) -> BaseException:
    """The exception a caller gets from `ray.get` when an actor's method raised `cause`."""
    try:
        raise cause
    except Exception as raised:
        error: BaseException = RayTaskError("ChunkWorker.analyze", "traceback", raised).as_instanceof_cause()  # type: ignore[no-untyped-call]
        return error


@pytest.mark.parametrize(
    ("error", "failed"),
    [
        (StorageUnreachable("chunk 3 of k: read_range failed"), "storage"),
        (as_task_error(StorageUnreachable("chunk 3 of k: read_range failed")), "storage"),
        (NodeDiedError("node gone"), "cluster"),  # type: ignore[no-untyped-call]
        (WorkerCrashedError(), "cluster"),
        (ObjectLostError("0" * 56, None, "call site"), "cluster"),
        (ConnectionError("ray client connection timeout"), "cluster"),
        (grpc.RpcError(), "cluster"),  # a ray:// client's channel closed under it
        # the recording's fault, or a bug: never waited out
        (ChunkFailed(Chunk(0, 0, 2000), "decoding failed"), None),
        (DecodeError("bad data"), None),
        (as_task_error(ObjectNotFound("no object at 'k'")), None),
        (ActorDiedError(), None),  # handled per chunk: counted against it, the actor replaced
        (ValueError("a bug"), None),
    ],
)
def test_what_counts_as_the_infrastructure_failing(error: BaseException, failed: str | None) -> None:
    assert infrastructure_failure(error) == failed


def test_a_storage_failure_in_an_actor_survives_the_trip_back() -> None:
    """What an actor raises for a storage outage comes back through pickling (a `ray://` client's path), message
    and all."""
    unavailable = StorageUnavailable("read_range", "k", 5, OSError("connection refused"))
    unreachable = StorageUnreachable(f"chunk 3 of k: {unavailable}")
    assert str(pickle.loads(pickle.dumps(unreachable))) == str(unreachable)


@pytest.mark.parametrize(("failures", "delay_s"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (20, 8.0)])
def test_pauses_double_up_to_a_ceiling(failures: int, delay_s: float) -> None:
    assert heal_delay_s(failures) == delay_s


@pytest.mark.parametrize(
    ("address", "client"),
    [(None, False), ("auto", False), ("10.0.0.5:6379", False), ("ray://head:10001", True)],
)
def test_only_a_ray_client_reconnects(address: str | None, client: bool) -> None:
    assert RayOptions(address=address).client is client


def test_a_negative_heal_time_is_refused() -> None:
    with pytest.raises(ValueError, match="heal_s must be >= 0"):
        RayOptions(heal_s=-1)
