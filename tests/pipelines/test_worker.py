"""The worker's identity: each Worker names its lease owner in the process that runs it."""

from __future__ import annotations

import multiprocessing
import os
import socket
from multiprocessing.queues import Queue

from pipelines.worker import Worker


def _report_a_new_workers_name(names: Queue[str]) -> None:
    names.put(Worker(None, None, None, None).worker_id)  # type: ignore[arg-type]


def test_forked_workers_hold_leases_under_their_own_names() -> None:
    """A name computed once at import would be shared by every worker forked from one parent, so two of them
    could each believe they hold the same job's lease."""
    fork = multiprocessing.get_context("fork")
    names: Queue[str] = fork.Queue()
    child = fork.Process(target=_report_a_new_workers_name, args=(names,))
    child.start()
    in_child = names.get(timeout=30)
    child.join(timeout=30)
    assert in_child == f"{socket.gethostname()}-{child.pid}"
    assert Worker(None, None, None, None).worker_id == f"{socket.gethostname()}-{os.getpid()}"  # type: ignore[arg-type]
