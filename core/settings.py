"""The one settings object, read from `PROCTOR_*` environment variables and an optional `.env`.

Everything that differs between a laptop and a production cluster lives here and is passed in
explicitly; nothing reads the environment anywhere else. Leaving `s3_endpoint` unset means "start the
embedded SeaweedFS server under `data_dir`"; leaving `database_url` unset means SQLite in `data_dir`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIB = 1024 * 1024
HIDDEN = "***"


def redact_database_url(url: str) -> str:
    """`url` as it may be printed or logged: the password hidden, whether in the authority or the query string."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<a database URL that does not parse: check PROCTOR_DATABASE_URL>"
    hidden = parsed.update_query_dict({"password": HIDDEN}) if "password" in parsed.query else parsed
    # the query's value is percent-encoded in rendering; shown as plainly as the authority's
    return hidden.render_as_string(hide_password=True).replace(f"password={quote(HIDDEN)}", f"password={HIDDEN}")


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting's error names the field and the reason, never the values given
    model_config = SettingsConfigDict(env_prefix="PROCTOR_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path(".proctor")

    # Object storage. No endpoint: the embedded SeaweedFS server is started under data_dir.
    s3_endpoint: str | None = Field(default=None, description="host:port of MinIO/S3, e.g. minio:9000")
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = "proctor"
    s3_retries: int = Field(default=4, ge=0, le=10)
    presigned_url_ttl_s: int = Field(default=900, ge=10, le=7 * 24 * 3600)
    s3_public_endpoint: str | None = Field(
        default=None,
        description="host:port that presigned URLs name, for clients that reach S3 at another address than the "
        "services do (e.g. the host's, outside Docker); used only to sign URLs; unset: s3_endpoint",
    )
    s3_public_secure: bool | None = Field(default=None, description="https for s3_public_endpoint; unset: s3_secure")

    # Metadata database. None: SQLite at data_dir/proctor.db.
    database_url: str | None = None
    migrate_on_start: bool = Field(
        default=True,
        description="serve, worker and the other commands migrate the database as they start; set false where a "
        "deploy runs `proctor migrate` as a step of its own, and they then refuse to start on an older schema",
    )

    # Processing
    ray_address: str | None = Field(default=None, description="None starts a local Ray; 'auto' or ray://... joins")
    ray_recording_url_ttl_s: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="lifetime of the presigned URL an actor reads a chunk's recording through (signed per chunk, "
        "as it is handed out; the actors hold no S3 credentials)",
    )
    ray_idle_release_s: float = Field(
        default=300.0,
        ge=0,
        description="a job worker releases its Ray actors after this long without a job (0: keeps them), so the "
        "cluster can scale down; the next job starts them again",
    )
    workers: int = Field(default=2, ge=1, description="Ray actors that analyse chunks in parallel")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    sample_fps: float = Field(default=5.0, gt=0, le=30)
    chunk_s: float = Field(default=30.0, ge=2, le=600)
    job_lease_s: float = Field(default=120.0, ge=2)
    job_max_attempts: int = Field(default=3, ge=1)
    worker_poll_s: float = Field(default=2.0, gt=0)
    job_deadline_floor_s: float = Field(default=600.0, gt=0, description="the least time an attempt at a job gets")
    job_deadline_factor: float = Field(
        default=1.0, gt=0, description="an attempt's time per second of recording, when that is over the floor"
    )
    worker_stop_grace_s: float = Field(
        default=8.0,
        ge=0,
        description="on SIGTERM a worker finishes its job if it should end within this, else hands it back; keep it "
        "under the supervisor's kill timeout (docker stop: 10 s, Kubernetes: terminationGracePeriodSeconds)",
    )
    chunk_max_crashes: int = Field(
        default=3, ge=1, description="a chunk that kills this many fan-out actors fails its job without a retry"
    )
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="`proctor worker` serves /healthz, /readyz, /metrics here; unset: off"
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="0.0.0.0 where probes or scrapers come over the network"
    )
    ready_check_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="/readyz: how long each dependency (database, object store) has to answer"
    )

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_api_url: str | None = Field(
        default=None, description="Base URL clients use to reach the API; defaults to http://api_host:api_port"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins (scheme://host[:port]) whose pages may call the API from a browser, for platforms that "
        "embed the recorder on their own site: comma-separated or a JSON list; empty: no CORS headers",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="addresses or CIDRs of the reverse proxies in front of `proctor serve` (comma-separated or a "
        "JSON list): only from these are X-Forwarded-For and X-Forwarded-Proto believed, so that audit entries and "
        "sign-in limits see the real client; empty: trust none (the connecting address is the client)",
    )

    # Review UI
    cookie_secure: bool | None = Field(
        default=None,
        description="mark cookies Secure (sent over HTTPS only); unset: on in production, off in development, where "
        "the embedded server answers plain http on 127.0.0.1",
    )
    web_session_ttl_s: int = Field(default=8 * 3600, ge=60)
    review_claim_ttl_s: int = Field(default=30 * 60, ge=10, description="a reviewer's lock on a session")
    review_assignment_ttl_s: int = Field(
        default=8 * 3600, ge=60, description="how long a session an officer assigns to a reviewer stays theirs"
    )
    auto_clear_interval_s: float = Field(
        default=60.0, gt=0, description="how often `proctor serve` runs the exams' auto-clear sweep"
    )
    login_max_failures: int = Field(
        default=5, ge=1, description="failed sign-ins on one username from one address before that pair is locked out"
    )
    login_lockout_s: int = Field(default=15 * 60, ge=1)
    login_account_max_failures: int = Field(
        default=50,
        ge=1,
        description="failed sign-ins on one account from all addresses together before it is locked for everyone "
        "for login_lockout_s: the backstop against guessing spread over many addresses",
    )
    login_attempts_per_address: int = Field(default=60, ge=1, description="per login_rate_window_s, any username")
    login_attempts_per_username: int = Field(default=20, ge=1, description="per login_rate_window_s, any address")
    login_rate_window_s: float = Field(default=60.0, gt=0)
    login_hash_slots: int = Field(
        default=2, ge=1, description="password checks at once; Argon2id takes 64 MiB for each of them"
    )
    login_hash_wait_s: float = Field(
        default=1.0, ge=0, description="how long a sign-in waits for a free password check before a 429"
    )
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_s: float = Field(default=5.0, gt=0, description="first retry delay; doubles per attempt")
    webhook_timeout_s: float = Field(
        default=15.0, gt=0, description="a whole delivery attempt: DNS, connect, send and the answer, however slow"
    )
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0)
    webhook_read_timeout_s: float = Field(default=10.0, gt=0, description="the longest wait for the next bytes")
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=0, description="read of an answer, then dropped")
    webhook_concurrency: int = Field(default=16, ge=1, description="deliveries in flight at once, per process")
    webhook_concurrency_per_tenant: int = Field(
        default=2, ge=1, description="of those, for one tenant: a slow receiver holds up only its own deliveries"
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="deliver to loopback and private-network addresses (RFC 1918, ULA, link-local), plain http "
        "included: for development and receivers inside your own network; the cloud metadata address and the S3 "
        "endpoint stay refused",
    )

    # Retention of recordings (biometric data)
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="`proctor retention` erases a session's recordings and results this many days after its review "
        "became final (a session never finally reviewed: after it was created); unset keeps them until erased "
        "on request",
    )

    # Audit trail: anchors of its hash chain (`proctor audit anchor`) are HMAC-SHA256 signed under this key
    audit_anchor_key: SecretStr | None = Field(
        default=None,
        description="signs `proctor audit anchor` lines and is needed to check signed ones; unset: anchors are "
        "plain JSON lines, as trustworthy as the place the auditor keeps them",
    )

    # Secrets at rest (webhook secrets) are sealed with AES-256-GCM under this key: base64 of 32 bytes
    secrets_key: SecretStr | None = Field(
        default=None,
        description="`openssl rand -base64 32`; required in production, generated under data_dir in development",
    )

    # Upload limits
    upload_token_ttl_s: int = Field(
        default=4 * 3600, ge=60, le=7 * 24 * 3600, description="an upload token's longest life, and its default"
    )
    part_size_bytes: int = Field(default=8 * MIB, ge=5 * MIB, le=512 * MIB)
    max_media_bytes: int = Field(default=20 * 1024 * MIB, ge=1)
    max_event_log_bytes: int = Field(default=16 * MIB, ge=1)
    max_recording_s: float = Field(default=6 * 3600, gt=0)
    min_video_side_px: int = Field(default=120, ge=1)
    max_video_side_px: int = Field(default=4096, ge=16)
    max_video_pixels: int = Field(
        default=3_000_000_000_000,
        ge=1,
        description="frames x width x height of one recording, what analysing it costs: the default takes 6 h of "
        "1080p at 60 fps or 3 h of 4K at 30 fps; more is refused at complete (pixel_budget_exceeded)",
    )
    # The media probe runs FFmpeg in a child process under these limits; a file that exceeds one is refused
    # (probe_limits_exceeded) without harm to the API process.
    probe_memory_bytes: int = Field(default=1024 * MIB, ge=256 * MIB, description="the probe's address space")
    probe_cpu_s: int = Field(default=120, ge=1)
    probe_timeout_s: float = Field(
        default=600.0, gt=0, description="the probe's own running time; time spent reading from storage is not counted"
    )

    # Request bodies, refused with 413 before they are parsed or the caller is authenticated. A part upload's
    # limit is the largest part a declared file can have (`part_size_bytes`, grown for files of over 10,000 parts).
    max_json_body_bytes: int = Field(default=MIB, ge=1024, description="a /v1 JSON request body")
    max_form_body_bytes: int = Field(default=64 * 1024, ge=1024, description="a review UI form, the login included")

    # Per-tenant quotas: what a tenant may hold at once, refused past it with 403 quota_exceeded. These are the
    # defaults; `proctor tenants quota SLUG` shows a tenant's use and sets its own.
    quota_open_sessions: int = Field(
        default=10_000, ge=0, description="sessions a tenant has registered whose recordings are not all uploaded"
    )
    quota_in_flight_bytes: int = Field(
        default=10 * 1024**4,
        ge=0,
        description="bytes of a tenant's files not yet complete: declared files at their size, streaming files at "
        "the parts received; the default is 10 TiB, 1 GiB for each of the default's open sessions",
    )
    quota_storage_bytes: int = Field(
        default=1024**5,
        ge=0,
        description="bytes of the uploaded media of a tenant's sessions not erased, uploads in flight included; "
        "the default is 1 PiB, a backstop: set each tenant's own",
    )

    # Part uploads in flight, and `complete`: what they may hold at once, apart from the threads the review UI and
    # the other routes share.
    part_buffer_bytes: int = Field(
        default=256 * MIB,
        ge=MIB,
        description="the memory all part bodies being received may hold together; a part that would go past it is "
        "refused (503 upload_capacity, with Retry-After) and retried by the client; at least the largest part",
    )
    part_read_timeout_s: float = Field(
        default=30.0, gt=0, description="a part body that sends nothing this long is dropped (408 part_read_timeout)"
    )
    part_threads: int = Field(
        default=8,
        ge=1,
        description="threads that check and store uploaded parts, at most; each holds a database connection while "
        "it stores, so keep part_threads + complete_threads well under the pool (15 on SQLite, 30 on PostgreSQL)",
    )
    complete_threads: int = Field(
        default=4, ge=1, description="files that `complete` verifies at once (each reads its file back); more wait"
    )

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _origins_from_text(cls, value: Any) -> Any:
        """PROCTOR_CORS_ORIGINS (and PROCTOR_TRUSTED_PROXIES) as a JSON list or comma-separated:
        `https://lms.example.org,https://x.example`."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [o.strip() for o in text.split(",") if o.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        """uvicorn would quietly treat a typo as a name that never matches; refuse it instead."""
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"PROCTOR_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR (e.g. 10.0.0.5 or 10.42.0.0/16); "
                    "name the proxies' addresses, not host names, and never '*'"
                ) from None
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.s3_endpoint is None:
                raise ValueError(
                    "PROCTOR_S3_ENDPOINT is unset in production: the embedded S3 server is for one machine only. "
                    "Point it at your MinIO (host:port) and set PROCTOR_S3_ACCESS_KEY / PROCTOR_S3_SECRET_KEY."
                )
            if self.database_url is None or self.database_url.startswith("sqlite"):
                raise ValueError(
                    "PROCTOR_DATABASE_URL must name PostgreSQL in production, e.g. "
                    "postgresql+psycopg://proctor@db:5432/proctor"
                )
        if self.s3_endpoint is not None and (self.s3_access_key is None or self.s3_secret_key is None):
            raise ValueError("PROCTOR_S3_ENDPOINT is set but PROCTOR_S3_ACCESS_KEY or PROCTOR_S3_SECRET_KEY is missing")
        return self

    @property
    def secure_cookies(self) -> bool:
        """`cookie_secure`, or on in production where it is unset: a deployment behind TLS should not have to
        remember it, and one served over plain http must say so (PROCTOR_COOKIE_SECURE=false)."""
        return self.environment == "production" if self.cookie_secure is None else self.cookie_secure

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'proctor.db').resolve()}"

    @property
    def redacted_database_url(self) -> str:
        """The database URL to print or log: its password hidden."""
        return redact_database_url(self.resolved_database_url)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Secrets are SecretStr (shown as '**********'); the database URL stays a plain string for the engine, so
        # its password is hidden here, in repr() and str() alike.
        for name, value in super().__repr_args__():
            yield name, redact_database_url(value) if name == "database_url" and value else value

    @property
    def resolved_public_api_url(self) -> str:
        return self.public_api_url or f"http://{self.api_host}:{self.api_port}"
