"""The one settings object, read from `PROCTOR_*` environment variables and an optional `.env`.

Everything that differs between a laptop and a production cluster lives here and is passed in
explicitly; nothing reads the environment anywhere else. Leaving `s3_endpoint` unset means "start the
embedded SeaweedFS server under `data_dir`"; leaving `database_url` unset means SQLite in `data_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROCTOR_", env_file=".env", extra="ignore")

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

    # Metadata database. None: SQLite at data_dir/proctor.db.
    database_url: str | None = None

    # Processing
    ray_address: str | None = Field(default=None, description="None starts a local Ray; 'auto' or ray://... joins")
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

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_api_url: str | None = Field(
        default=None, description="Base URL clients use to reach the API; defaults to http://api_host:api_port"
    )

    # Review UI
    cookie_secure: bool = Field(default=False, description="mark cookies Secure: set it when served over HTTPS")
    web_session_ttl_s: int = Field(default=8 * 3600, ge=60)
    review_claim_ttl_s: int = Field(default=30 * 60, ge=10, description="a reviewer's lock on a session")
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
    webhook_timeout_s: float = Field(default=10.0, gt=0)

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

    # Upload limits
    part_size_bytes: int = Field(default=8 * MIB, ge=5 * MIB, le=512 * MIB)
    max_media_bytes: int = Field(default=20 * 1024 * MIB, ge=1)
    max_event_log_bytes: int = Field(default=16 * MIB, ge=1)
    max_recording_s: float = Field(default=6 * 3600, gt=0)
    min_video_side_px: int = Field(default=120, ge=1)
    max_video_side_px: int = Field(default=4096, ge=16)

    # Request bodies, refused with 413 before they are parsed or the caller is authenticated. A part upload's
    # limit is the largest part a declared file can have (`part_size_bytes`, grown for files of over 10,000 parts).
    max_json_body_bytes: int = Field(default=MIB, ge=1024, description="a /v1 JSON request body")
    max_form_body_bytes: int = Field(default=64 * 1024, ge=1024, description="a review UI form, the login included")

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
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'proctor.db').resolve()}"

    @property
    def resolved_public_api_url(self) -> str:
        return self.public_api_url or f"http://{self.api_host}:{self.api_port}"
