"""Metadata tables (SQLAlchemy 2), the engine factory and the migration runner.

SQLite in the data directory is the embedded default; PostgreSQL is the production database. Both run the
same Alembic migrations (`ingest/migrations`). Times are stored as UTC and always come back timezone-aware.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

from ingest.states import SessionState, check_transition


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC (SQLite has no time zones); hand back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"refusing a naive datetime {value!r}: pass a timezone-aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Tenant(Base):
    """An exam platform. It reaches the API with its own API keys and only ever sees its own data."""

    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Where final review outcomes are POSTed, signed with HMAC-SHA256 under this secret.
    webhook_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    webhook_secret: Mapped[str | None] = mapped_column(String(128), default=None)


class ApiKey(Base):
    """A bearer key `pp_<prefix>_<secret>`: the prefix finds the row, only the secret's SHA-256 is kept."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    tenant: Mapped[Tenant] = relationship()


class Exam(Base):
    """An exam of a tenant; created on the first session that names it. Its policy drives flagging."""

    __tablename__ = "exams"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(300), default="")
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExamSession(Base):
    """One candidate's recorded attempt at an exam, and where it is in the state machine."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("exam_id", "attempt_id"),
        Index("ix_sessions_tenant_state", "tenant_id", "state"),
        Index("ix_sessions_review_queue", "state", "risk_score", "processed_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"))
    candidate_id: Mapped[str] = mapped_column(String(128))
    attempt_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=SessionState.CREATED.value)
    reason_code: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # Processing: progress while it runs, then the outcome that orders the review queue.
    chunks_total: Mapped[int | None] = mapped_column(Integer, default=None)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    risk_score: Mapped[float | None] = mapped_column(Float, default=None)
    review_priority: Mapped[str | None] = mapped_column(String(8), default=None)  # high, medium, low
    results_prefix: Mapped[str | None] = mapped_column(String(512), default=None)
    pipeline_version: Mapped[str | None] = mapped_column(String(32), default=None)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Review: one reviewer holds a claim until it expires; the outcome is final after any second review.
    claimed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    claim_expires_at: Mapped[datetime | None] = mapped_column(default=None)

    exam: Mapped[Exam] = relationship()
    tenant: Mapped[Tenant] = relationship()
    media: Mapped[list[Media]] = relationship(back_populates="session", order_by="Media.kind")

    def move_to(self, target: SessionState, *, code: str | None = None, reason: str | None = None) -> StateChange:
        """Change state (raises `IllegalTransition`) and return the history row to add beside it."""
        current = SessionState(self.state)
        check_transition(current, target, reason)
        self.state = target.value
        self.reason_code, self.reason = code, reason
        self.updated_at = utcnow()
        return StateChange(
            session_id=self.id, from_state=current.value, to_state=target.value, code=code, reason=reason
        )


class StateChange(Base):
    """Append-only history of a session's states: who rejected what and why stays visible."""

    __tablename__ = "session_state_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Media(Base):
    """One uploaded file of a session (webcam, screen or event log) and its multipart upload."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("session_id", "kind"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    object_key: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(100))
    declared_size: Mapped[int] = mapped_column(BigInteger)
    declared_sha256: Mapped[str] = mapped_column(String(64))
    part_size: Mapped[int] = mapped_column(BigInteger)
    upload_id: Mapped[str | None] = mapped_column(String(256), default=None)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, complete, rejected
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)

    session: Mapped[ExamSession] = relationship(back_populates="media")

    @property
    def part_count(self) -> int:
        return max(1, -(-self.declared_size // self.part_size))


class UploadPart(Base):
    """A part that reached storage through the API, with the checksums we computed on the way."""

    __tablename__ = "upload_parts"
    media_id: Mapped[str] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """`Idempotency-Key` of a session registration: a replay returns the same session."""

    __tablename__ = "idempotency_keys"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlagSegment(Base):
    """A flagged time segment of a session, as the pipeline found it (reviewer decisions live elsewhere)."""

    __tablename__ = "segments"
    __table_args__ = (
        Index("ix_segments_session_start", "session_id", "start_ms"),
        Index("ix_segments_kind_session", "kind", "session_id"),  # the review queue's flag-kind filter
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    start_ms: Mapped[int] = mapped_column(Integer)
    end_ms: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    peak_ms: Mapped[int] = mapped_column(Integer)
    evidence_keys: Mapped[list[str]] = mapped_column(JSON, default=list)
    detector_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pipeline_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # "detector", or "reviewer" for a flag a reviewer added (re-processing keeps those).
    source: Mapped[str] = mapped_column(String(16), default="detector", server_default="detector")
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class Job(Base):
    """Work for `proctor worker`: claimed with a lease that a heartbeat extends, retried with backoff."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "state", "run_after"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="process")
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued, running, done, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who reviews or audits; the password is an Argon2id hash, never stored in clear."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # reviewer, officer, admin
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)


class UserScope(Base):
    """What a user may see: a whole tenant (exam_id NULL) or one exam of it."""

    __tablename__ = "user_scopes"
    __table_args__ = (UniqueConstraint("user_id", "tenant_id", "exam_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    exam_id: Mapped[str | None] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), default=None)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, only its SHA-256 is kept (logout deletes it)."""

    __tablename__ = "web_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class FlagDecision(Base):
    """A reviewer's current decision on one flag (its history is in the audit trail)."""

    __tablename__ = "flag_decisions"
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # confirmed, dismissed
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionReview(Base):
    """A session's outcome. A Rules Violation waits for a second, different reviewer before it is final."""

    __tablename__ = "session_reviews"
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32))  # Clean, Suspicious, Rules Violation, Not Reviewed
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(24))  # awaiting_second, final
    reviewer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    second_reviewer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    second_note: Mapped[str | None] = mapped_column(Text, default=None)
    finalised_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEvent(Base):
    """Append-only trail of every view and decision (database triggers refuse UPDATE and DELETE)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_session_at", "session_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(160))  # "user:<username>", "api:<tenant slug>", "system:<job>"
    action: Mapped[str] = mapped_column(String(48))
    tenant_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    session_id: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)


class WebhookDelivery(Base):
    """A signed POST owed to a tenant, retried with backoff until delivered or out of attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_due", "state", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(48))
    url: Mapped[str] = mapped_column(String(1000))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def make_engine(url: str) -> Engine:
    """An engine with SQLite made safe for concurrent API workers (WAL, foreign keys, a busy timeout)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (creates SQLite's folder if needed)."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
