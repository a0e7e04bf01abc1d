"""Every table of the metadata database (SQLAlchemy 2 mapped classes), whichever stage writes it.

One schema, one set of Alembic migrations (`core/migrations`): the stages share sessions, media, flags and
reviews, so the tables live in the kernel and each stage owns the code that writes its rows. Columns that
hold a status or a kind store the `.value` of an enum in `core.vocabulary`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, new_id, utcnow
from core.probes import VideoProbe
from core.states import SessionState, check_transition
from core.vocabulary import VIDEO_KINDS, DeliveryState, FlagSource, JobKind, JobState, MediaKind, MediaState


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
    # The reviewers' one-click note reasons, as its integrity officers set them; None: the defaults.
    note_reasons: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    # Its own quotas (`ingest.quotas`), set with `proctor tenants quota`; None: the server's default.
    quota_open_sessions: Mapped[int | None] = mapped_column(Integer, default=None)
    quota_in_flight_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    quota_storage_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # At least its bytes in flight and stored: raised with each upload accepted, set to the exact sums only where a
    # quota check would otherwise refuse (`ingest.quotas`); None: not counted yet.
    in_flight_bytes_bound: Mapped[int | None] = mapped_column(BigInteger, default=None)
    stored_bytes_bound: Mapped[int | None] = mapped_column(BigInteger, default=None)


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
    review_priority: Mapped[str | None] = mapped_column(String(8), default=None)  # a ReviewPriority
    results_prefix: Mapped[str | None] = mapped_column(String(512), default=None)
    pipeline_version: Mapped[str | None] = mapped_column(String(32), default=None)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Who was on camera (pipelines.identity): samples, matches against the session's first face and the
    # enrolment, the reference frame's evidence key. Counts and distances only: never a face descriptor.
    identity: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The timeline's thumbnail strip: {"key": the sprite's object key, "every_s", "count", "columns", tile size}.
    thumbnails: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Review: one reviewer holds a claim until it expires; the outcome is final after any second review.
    claimed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    claim_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # The exam's auto-clear found it eligible and drew it for reviewers instead, as a quality-control sample.
    qc_sample: Mapped[bool] = mapped_column(default=False, server_default=false())

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
    """One uploaded file of a session (webcam, screen, event log, or an enrolment photo or clip) and its
    multipart upload. Enrolment media live under the candidate's prefix (`core.enrolments.CandidatePrefix`)."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("session_id", "kind"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    object_key: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(100))
    # A streaming file's (uploaded while recorded) are None until its complete sends them.
    declared_size: Mapped[int | None] = mapped_column(BigInteger)
    declared_sha256: Mapped[str | None] = mapped_column(String(64))
    streaming: Mapped[bool] = mapped_column(default=False, server_default=false())
    part_size: Mapped[int] = mapped_column(BigInteger)
    upload_id: Mapped[str | None] = mapped_column(String(256), default=None)
    state: Mapped[str] = mapped_column(String(16), default=MediaState.PENDING.value)  # a MediaState
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Why this file was rejected. A rejected recording also rejects its session; a rejected enrolment does not.
    reason_code: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)

    session: Mapped[ExamSession] = relationship(back_populates="media")

    @property
    def part_count(self) -> int | None:
        """Parts of the whole file; None while a streaming file's size is not known."""
        if self.declared_size is None:
            return None
        return max(1, -(-self.declared_size // self.part_size))

    @property
    def video_probe(self) -> VideoProbe | None:
        """The probe of a completed recording or enrolment clip; None for the event log, a photo and for media
        not yet complete."""
        if (self.kind not in VIDEO_KINDS and self.kind != MediaKind.ENROLMENT_CLIP) or not self.probe:
            return None
        return VideoProbe.from_dict(self.probe)

    @property
    def enrolment_quality(self) -> dict[str, Any] | None:
        """An accepted enrolment's quality figures (never its descriptor); None for anything else."""
        return None if not self.probe else self.probe.get("enrolment")

    @property
    def events_count(self) -> int | None:
        """How many events a completed event log holds; None for recordings and for pending media."""
        if self.kind != MediaKind.EVENTS or not self.probe:
            return None
        return int(self.probe["events_count"])


class CandidateEnrolment(Base):
    """An accepted reference face of a candidate: the 128-d template the pipeline compares sessions with.

    Biometric data: scoped to its tenant, never logged, erased by `DELETE /v1/candidates/{id}` and by
    retention. It belongs to the candidate, not to the session that uploaded it (`session_id` only says
    where it came from), so later sessions of the same candidate reuse it (`core.enrolments.latest_enrolment`).
    """

    __tablename__ = "candidate_enrolments"
    __table_args__ = (Index("ix_candidate_enrolments_candidate", "tenant_id", "candidate_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    candidate_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), default=None, index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # a MediaKind: enrolment_photo or enrolment_clip
    object_key: Mapped[str] = mapped_column(String(512))
    descriptor: Mapped[list[float]] = mapped_column(JSON)  # 128 floats (dlib's face descriptor, a mean)
    frames: Mapped[int] = mapped_column(Integer)  # frames the template averages (1 for a photo)
    face_size_px: Mapped[float] = mapped_column(Float)
    brightness: Mapped[float] = mapped_column(Float)  # mean luma of the face, 0..255
    sharpness: Mapped[float] = mapped_column(Float)  # Laplacian variance over grey variance of the face chip
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UploadPart(Base):
    """A part that reached storage through the API, with the checksums we computed on the way."""

    __tablename__ = "upload_parts"
    media_id: Mapped[str] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class UploadToken(Base):
    """A bearer token `put_<secret>` that opens one session's uploads to a browser (never the tenant's API key);
    only its SHA-256 is kept. It goes with its session."""

    __tablename__ = "upload_tokens"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
    # Why it fired, for the reviewer: e.g. a looking-away flag's score trace against its calibrated reference.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A FlagSource: the detectors, or a reviewer who added a flag they missed (re-processing keeps those).
    source: Mapped[str] = mapped_column(
        String(16), default=FlagSource.DETECTOR.value, server_default=FlagSource.DETECTOR.value
    )
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class Job(Base):
    """Work for `proctor worker`: claimed with a lease that a heartbeat extends, retried with backoff."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "state", "run_after"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default=JobKind.PROCESS.value)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)  # a JobState
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
    role: Mapped[str] = mapped_column(String(16))  # a Role
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
    # A sign-in narrower than its user's scopes (an LMS course team member's, `openedx`): only these exams,
    # or only this one session. None: the user's own scopes.
    scope_exam_ids: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    scope_session_id: Mapped[str | None] = mapped_column(String(32), default=None)


class FlagDecision(Base):
    """A reviewer's current decision on one flag (its history is in the audit trail)."""

    __tablename__ = "flag_decisions"
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # a Decision
    note: Mapped[str] = mapped_column(Text, default="")
    # The note leaves for the platform (once the review is final) only when its reviewer shared it.
    note_shared: Mapped[bool] = mapped_column(default=False, server_default=false())
    reviewer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionReview(Base):
    """A session's outcome. A Rules Violation waits for a second, different reviewer before it is final."""

    __tablename__ = "session_reviews"
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32))  # an Outcome
    note: Mapped[str] = mapped_column(Text, default="")
    note_shared: Mapped[bool] = mapped_column(default=False, server_default=false())  # see FlagDecision
    status: Mapped[str] = mapped_column(String(24))  # a ReviewStatus (awaiting_second or final)
    reviewer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Set when no person decided: the system actor that did ("system:auto_clear"); reviewer_id is then None.
    decided_by_system: Mapped[str | None] = mapped_column(String(64), default=None)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    second_reviewer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    second_note: Mapped[str | None] = mapped_column(Text, default=None)
    second_note_shared: Mapped[bool] = mapped_column(default=False, server_default=false())
    finalised_at: Mapped[datetime | None] = mapped_column(default=None)


class ReviewOutcome(Base):
    """Each final outcome of a session as a version: 1 for the first, one more after each appeal.

    Written when an outcome becomes final and never rewritten, but for one step: an integrity officer who
    reopens it for an appeal fills in who, when and why, and `platform_result` keeps the review result the
    platform had, which it goes on seeing (marked under appeal) until the next version is final.
    """

    __tablename__ = "review_outcomes"
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    outcome: Mapped[str] = mapped_column(String(32))  # an Outcome
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_by_system: Mapped[str | None] = mapped_column(String(64), default=None)  # see SessionReview
    second_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    decided_at: Mapped[datetime]  # when it became final
    reopened_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    reopen_reason: Mapped[str | None] = mapped_column(Text, default=None)
    reopened_at: Mapped[datetime | None] = mapped_column(default=None)
    platform_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class AuditEvent(Base):
    """Append-only trail of every view and decision, hash-chained (`core.audit` specifies the chain). Database
    triggers refuse UPDATE and DELETE, and TRUNCATE on PostgreSQL."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_session_at", "session_id", "at"),
        Index("ix_audit_events_seq", "seq", unique=True),  # two appends can never take the same place
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(160))  # "user:<username>", "api:<tenant slug>", "system:<job>"
    action: Mapped[str] = mapped_column(String(48))
    tenant_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    session_id: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    # The chain: the entry's place (1, 2, 3, ... with no gaps), the hash of the entry before it, and its own.
    seq: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditText(Base):
    """Free text an audit entry refers to (a reviewer's note, an appeal's grounds), kept beside the chain so that
    an erasure can remove it: the entry holds only a salted commitment to it (`core.audit_texts`)."""

    __tablename__ = "audit_texts"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # the entry's place
    field: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(32), index=True)
    salt: Mapped[str | None] = mapped_column(String(32))  # hex; None once erased
    text: Mapped[str | None] = mapped_column(Text)  # None once erased
    erased_at: Mapped[datetime | None] = mapped_column(default=None)


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
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)  # a DeliveryState
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # How it is sent: `webhook` (Standard Webhooks, to the tenant) or another sender channel (`openedx`), and
    # that channel's credential (`ref`, e.g. the EdxClient whose LMS it calls).
    channel: Mapped[str] = mapped_column(String(16), default="webhook", server_default="webhook")
    ref: Mapped[str | None] = mapped_column(String(64), default=None)


class ExamPolicyVersion(Base):
    """Each policy an exam was given through the review UI or the API, numbered 1, 2, ... (`core.policy_changes`).
    `Exam.policy` holds the latest; these rows are its history, and what each flag version was scored under."""

    __tablename__ = "exam_policy_versions"
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    policy: Mapped[dict[str, Any]] = mapped_column()  # `ExamPolicy.to_json()`
    changed_by: Mapped[str] = mapped_column(String(160))  # an audit actor: "user:<username>", "api:<tenant slug>"
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlagVersion(Base):
    """A re-scoring that changed a session's detector flags: version 2 is the first (1 is the processing run's).

    The flags themselves are the `segments` rows; this keeps what changed and under which policy version, and the
    reviewers' decisions that went with flags the new policy no longer raises (`dropped_decisions`)."""

    __tablename__ = "flag_versions"
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    policy_version: Mapped[int | None] = mapped_column(Integer, default=None)  # None: the exam has none recorded
    added: Mapped[int] = mapped_column(Integer)
    removed: Mapped[int] = mapped_column(Integer)
    kept: Mapped[int] = mapped_column(Integer)
    # [{"kind", "start_ms", "end_ms", "decision", "note", "reviewer_id"}] of the removed flags that had a decision
    dropped_decisions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Accommodation(Base):
    """One attempt's accommodation, set by an integrity officer: kinds not flagged for this candidate, and a note
    (a medical reason, say) that reviewers see on the session page. Applied whenever the session is (re-)scored."""

    __tablename__ = "accommodations"
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    kinds_off: Mapped[list[str]] = mapped_column(JSON, default=list)  # FlagKind values
    note: Mapped[str] = mapped_column(Text, default="")
    set_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


import core.lms_tables  # noqa: E402,F401  # registers the LMS integrations' tables on the same metadata
