"""What the API and the job worker both export in the Prometheus text format: the job queue's depth per open
state (queued, running) and how long the oldest job that is due has waited for a worker.

Each process keeps its metrics in a `CollectorRegistry` of its own, held by the app or the worker, never in
prometheus_client's global default registry: a test builds many apps in one process, and no metric should
leak from one to the next. The queue's depth is read from the database when scraped, so every process reports
the same figures: aggregate them with `max`, not `sum`. Finished jobs are not counted here (that count only
grows, and a scan of it at every scrape would grow with it): the worker's own counters say how jobs end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.db import utcnow
from core.tables import Job
from core.vocabulary import OPEN_JOB_STATES, JobState

log = logging.getLogger(__name__)


def queue_depth(counts: dict[str, int], oldest_due_s: float) -> list[GaugeMetricFamily]:
    """The gauges: open jobs per state (a state with none reads 0, not absent), and the oldest due job's wait."""
    jobs = GaugeMetricFamily(
        "proctor_queue_jobs",
        "Open processing jobs per state (queued includes jobs waiting out a retry backoff)",
        labels=["state"],
    )
    for state in OPEN_JOB_STATES:
        jobs.add_metric([state], counts.get(state, 0))
    oldest = GaugeMetricFamily(
        "proctor_queue_oldest_due_seconds",
        "How long the oldest queued job that is due has waited for a worker (0: none waits): alert on it",
        value=oldest_due_s,
    )
    return [jobs, oldest]


class QueueDepth(Collector):
    """Reads the open jobs per state, and the oldest due job's wait, at each scrape. A database that fails the
    query leaves these gauges out of that scrape (logged) rather than failing the whole page: the other metrics
    matter most when it is down."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self._db = db

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from queue_depth({}, 0.0)  # registering needs the names only: no query

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        try:
            with self._db() as db:  # both served by the claim index (state, run_after)
                open_jobs = Job.state.in_(OPEN_JOB_STATES)
                rows = db.execute(select(Job.state, func.count()).where(open_jobs).group_by(Job.state)).all()
                due = Job.state == JobState.QUEUED.value
                oldest = db.scalar(select(func.min(Job.run_after)).where(due, Job.run_after <= now))
        except SQLAlchemyError as exc:
            log.warning("queue depth not read", extra={"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            return
        waited_s = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield from queue_depth({state: count for state, count in rows}, waited_s)


def registry_with_queue_depth(db: sessionmaker[Session]) -> CollectorRegistry:
    """A new registry for one process's metrics, the queue's depth already in it."""
    registry = CollectorRegistry()
    registry.register(QueueDepth(db))
    return registry
