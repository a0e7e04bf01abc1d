"""The analysis stack's wiring: detector and decode configs, the Ray fan-out and the worker, from settings.

Imported only by the commands that process recordings, so the API server's process never loads ONNX
Runtime, OpenCV or Ray.
"""

from __future__ import annotations

from core.context import AppContext
from core.settings import Settings
from detectors import DetectorConfigs, RuntimeConfig
from pipelines.analysis import AnalysisConfig
from pipelines.decode import DecodeOptions
from pipelines.fanout import RayFanout, RayOptions
from pipelines.jobs import JobQueue
from pipelines.worker import Worker, WorkerConfig


def analysis_config(settings: Settings) -> AnalysisConfig:
    return AnalysisConfig(
        decode=DecodeOptions(sample_fps=settings.sample_fps),
        detectors=DetectorConfigs(runtime=RuntimeConfig(device=settings.device)),
        chunk_target_ms=round(settings.chunk_s * 1000),
    )


def ray_options(settings: Settings, workers: int | None = None) -> RayOptions:
    return RayOptions(
        address=settings.ray_address,
        workers=workers or settings.workers,
        device=settings.device,
        max_chunk_crashes=settings.chunk_max_crashes,
        url_ttl_s=settings.ray_recording_url_ttl_s,
        idle_release_s=settings.ray_idle_release_s,
    )


def ray_fanout(context: AppContext, workers: int | None = None) -> RayFanout:
    settings = context.settings
    return RayFanout(analysis_config(settings), context.location, ray_options(settings, workers))


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        chunk_target_ms=round(settings.chunk_s * 1000),
        poll_s=settings.worker_poll_s,
        deadline_floor_s=settings.job_deadline_floor_s,
        deadline_factor=settings.job_deadline_factor,
        stop_grace_s=settings.worker_stop_grace_s,
    )


def worker(context: AppContext, fanout: RayFanout, queue: JobQueue) -> Worker:
    """A job worker on `fanout`, which it lets release its actors while the queue stays empty."""
    config = worker_config(context.settings)
    return Worker(context.db, context.store, fanout, queue, config, release_idle=fanout.release_if_idle)
