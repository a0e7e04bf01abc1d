"""From the one settings object to each stage's typed config.

Stages never read `Settings`; they take the config dataclasses built here (only `core.context`, which
builds the engine and the object store, reads its own few settings) (and, for the analysis stack,
in `proctor.processing`, kept apart so that `proctor serve` never imports ONNX Runtime, OpenCV or Ray).
Adding a setting means adding it to `core.settings.Settings` and passing it on here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

from fastapi import FastAPI

from api.app import create_api
from api.guards import BodyLimits
from api.upload_capacity import PartUploadLimits
from core.context import AppContext
from core.exam_policy import ExamPolicy
from core.rescoring import FlagSpan, Rescorer, StoredRun
from core.secrets_box import SecretBox, secret_box
from core.settings import Settings
from ingest.enrolment import CheckedFace, EnrolmentChecks, FaceCheck, Frame
from ingest.probe import MediaRejected, ProbeLimits
from ingest.probe_process import Sandbox
from ingest.quotas import QuotaLimits
from ingest.uploads import UploadLimits, Uploads, part_size_for
from openedx import recorder_check
from openedx.callbacks import OPENEDX_CHANNEL, LmsCallbacks
from openedx.dashboard import mount_instructor_dashboard
from openedx.routes import mount_openedx
from pipelines.jobs import JobQueue, QueuePolicy
from recorder.web import mount_recorder
from review_ui.accounts import LoginPolicy
from review_ui.delivery_channels import DeliveryChannel
from review_ui.http import ReviewConfig
from review_ui.login_limits import Rate
from review_ui.web import mount_review
from review_ui.webhook_destinations import DestinationRules
from review_ui.webhooks import DeliveryPolicy
from storage.embedded_s3 import S3Identity, running_embedded_s3, s3_location
from storage.object_store import ObjectStore, S3Location


def configured_s3(settings: Settings) -> S3Location | None:
    """The S3 service the settings name, or None for the embedded server."""
    if settings.s3_endpoint is None:
        return None
    assert settings.s3_access_key is not None and settings.s3_secret_key is not None  # Settings checks this
    return S3Location(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        settings.s3_bucket,
        secure=settings.s3_secure,
        region=settings.s3_region,
    )


@contextmanager
def s3(settings: Settings) -> Iterator[S3Location]:
    """The configured S3 service, or the embedded server under the data directory for the block's duration."""
    with s3_location(configured_s3(settings), settings.data_dir, settings.s3_bucket) as location:
        yield location


@contextmanager
def worker_s3(settings: Settings) -> Iterator[S3Location]:
    """A job worker's S3: the configured service with the keys this process is given (deploy/ gives the workers keys
    of their own, which read the bucket and write results), or the embedded server as its worker identity, which
    may do as much and no more (`storage.embedded_s3.worker_actions`)."""
    configured = configured_s3(settings)
    with s3_location(configured, settings.data_dir, settings.s3_bucket, identity=S3Identity.WORKER) as location:
        yield location


def upload_limits(settings: Settings) -> UploadLimits:
    return UploadLimits(
        part_size_bytes=settings.part_size_bytes,
        max_media_bytes=settings.max_media_bytes,
        max_event_log_bytes=settings.max_event_log_bytes,
        presigned_url_ttl_s=settings.presigned_url_ttl_s,
        upload_token_ttl_s=settings.upload_token_ttl_s,
        quotas=quota_limits(settings),
        probe=ProbeLimits(
            min_side_px=settings.min_video_side_px,
            max_side_px=settings.max_video_side_px,
            max_duration_s=settings.max_recording_s,
            max_pixels=settings.max_video_pixels,
            sandbox=Sandbox(
                memory_bytes=settings.probe_memory_bytes, cpu_s=settings.probe_cpu_s, wall_s=settings.probe_timeout_s
            ),
        ),
    )


def quota_limits(settings: Settings) -> QuotaLimits:
    """Every tenant's quotas but where the tenant has its own."""
    return QuotaLimits(
        open_sessions=settings.quota_open_sessions,
        in_flight_bytes=settings.quota_in_flight_bytes,
        storage_bytes=settings.quota_storage_bytes,
    )


def body_limits(settings: Settings) -> BodyLimits:
    """A part upload may be as large as the largest part of a file the limits accept (events logs included)."""
    largest_part = max(
        part_size_for(limit, settings.part_size_bytes)
        for limit in (settings.max_media_bytes, settings.max_event_log_bytes)
    )
    return BodyLimits(
        json_bytes=settings.max_json_body_bytes, part_bytes=largest_part, form_bytes=settings.max_form_body_bytes
    )


def part_uploads(settings: Settings) -> PartUploadLimits:
    return PartUploadLimits(
        part_buffer_bytes=settings.part_buffer_bytes,
        part_read_timeout_s=settings.part_read_timeout_s,
        part_threads=settings.part_threads,
        complete_threads=settings.complete_threads,
    )


def policy_rescorer(store: ObjectStore) -> Rescorer:
    """The pipelines' re-scorer, as the review UI previews a policy change with it: built on the first preview,
    so `proctor serve` loads the analysis stack (NumPy's segmenter, the detectors' calibration) only then."""
    built: list[Rescorer] = []

    def rescore(run: StoredRun, policy: ExamPolicy) -> list[FlagSpan]:
        if not built:
            from pipelines.rescore import StoredSignalsRescorer

            built.append(StoredSignalsRescorer(store))
        return built[0](run, policy)

    return rescore


def enrolment_face_check() -> FaceCheck:
    """The detectors' enrolment check as ingest calls it: built on the first enrolment a process completes.

    Imported here, not at the top, so `proctor serve` loads OpenCV, ONNX Runtime and the face models only when a
    platform uses enrolment. On the CPU whatever `PROCTOR_DEVICE` says: checks are rare and take ~50 ms a frame.
    """
    from detectors.enrolment import EnrolmentChecker, EnrolmentRefused
    from detectors.runtime import RuntimeConfig

    checker = EnrolmentChecker(runtime=RuntimeConfig(device="cpu"))

    def check(frames: Sequence[Frame]) -> CheckedFace:
        try:
            return checker(frames)
        except EnrolmentRefused as refused:
            raise MediaRejected(refused.code, refused.message) from None

    return check


def uploads(context: AppContext, enrolments: EnrolmentChecks | None = None) -> Uploads:
    """The upload service; `enrolments` shares its face check with the API's system check (models load once)."""
    settings = context.settings
    return Uploads(
        context.db,
        context.store,
        upload_limits(settings),
        job_max_attempts=settings.job_max_attempts,
        enrolments=enrolments or EnrolmentChecks(enrolment_face_check),
    )


def job_queue(context: AppContext) -> JobQueue:
    settings = context.settings
    return JobQueue(context.db, QueuePolicy(lease_s=settings.job_lease_s, max_attempts=settings.job_max_attempts))


def login_policy(settings: Settings) -> LoginPolicy:
    window_s = settings.login_rate_window_s
    return LoginPolicy(
        max_failures=settings.login_max_failures,
        lockout=timedelta(seconds=settings.login_lockout_s),
        account_max_failures=settings.login_account_max_failures,
        per_address=Rate(settings.login_attempts_per_address, window_s),
        per_username=Rate(settings.login_attempts_per_username, window_s),
        hash_slots=settings.login_hash_slots,
        hash_wait_s=settings.login_hash_wait_s,
    )


def review_config(settings: Settings) -> ReviewConfig:
    return ReviewConfig(
        login=login_policy(settings),
        web_session_ttl=timedelta(seconds=settings.web_session_ttl_s),
        claim_ttl=timedelta(seconds=settings.review_claim_ttl_s),
        assignment_ttl=timedelta(seconds=settings.review_assignment_ttl_s),
        cookie_secure=settings.secure_cookies,
    )


def secrets(settings: Settings) -> SecretBox:
    """The box secrets at rest are sealed in (webhook secrets, Open edX clients' secrets)."""
    key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    return secret_box(key, production=settings.environment == "production", data_dir=settings.data_dir)


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    """The webhook sender's policy. Webhooks never go to the S3 server: the configured one, or the embedded
    one running for this data directory (call this after `s3` has started it)."""
    embedded = None if settings.s3_endpoint else running_embedded_s3(settings.data_dir, settings.s3_bucket)
    s3_endpoint = settings.s3_endpoint or (embedded.endpoint if embedded else None)
    key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    return DeliveryPolicy(
        secrets=secret_box(key, production=settings.environment == "production", data_dir=settings.data_dir),
        max_attempts=settings.webhook_max_attempts,
        backoff_s=settings.webhook_backoff_s,
        timeout_s=settings.webhook_timeout_s,
        connect_timeout_s=settings.webhook_connect_timeout_s,
        read_timeout_s=settings.webhook_read_timeout_s,
        max_response_bytes=settings.webhook_max_response_bytes,
        concurrency=settings.webhook_concurrency,
        per_tenant=min(settings.webhook_concurrency_per_tenant, settings.webhook_concurrency),
        destinations=DestinationRules(
            allow_private=settings.webhook_allow_private, refused_endpoints=(s3_endpoint,) if s3_endpoint else ()
        ),
    )


def delivery_channels(context: AppContext, policy: DeliveryPolicy) -> dict[str, DeliveryChannel]:
    """The webhook sender's channels besides the tenants' webhooks: Open edX's callbacks to its LMSs."""
    return {OPENEDX_CHANNEL: LmsCallbacks(context.db, policy.secrets)}


def platform_app(context: AppContext, upload_service: Uploads | None = None) -> FastAPI:
    """The platform API alone (`/v1`), as `proctor demo` serves it to upload the sample."""
    enrolments = EnrolmentChecks(enrolment_face_check)
    return create_api(
        context.db,
        context.store,
        upload_service or uploads(context, enrolments),
        presigned_url_ttl_s=context.settings.presigned_url_ttl_s,
        check_ready=context.check_ready,
        body_limits=body_limits(context.settings),
        part_uploads=part_uploads(context.settings),
        enrolment_checks=enrolments,
        cors_origins=context.settings.cors_origins,
    )


def server_app(context: AppContext) -> FastAPI:
    """What `proctor serve` serves: the platform API, the review UI and the Open edX backend in one app."""
    app = platform_app(context)
    mount_review(app, context.db, context.store, review_config(context.settings), policy_rescorer(context.store))
    mount_openedx(
        app,
        context.db,
        app.state.platform.uploads,  # the very upload service of the platform API
        secrets(context.settings),
        context.store,
        public_url=context.settings.public_api_url,
    )
    mount_instructor_dashboard(app, secrets(context.settings))
    mount_recorder(app)
    app.include_router(recorder_check.router)
    return app
