"""The tables of the LMS integrations (Open edX's REST proctoring backend), kept beside `core.tables`.

An Open edX installation is a client of one tenant: it authenticates with a client id and secret (the secret
sealed at rest, because edX signs its instructor-dashboard JWTs with it), creates exams and registers
attempts. Each attempt becomes one of our sessions when its recorder starts. Calls back to the LMS
(`ready`, `reviewed`) go through the webhook outbox (`core.tables.WebhookDelivery`, channel `openedx`);
`SessionCallback` says which deliveries a session's events owe, whoever registered them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, new_id, utcnow


class EdxClient(Base):
    """An Open edX installation allowed to call the REST backend for one tenant."""

    __tablename__ = "edx_clients"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_sealed: Mapped[str] = mapped_column(Text)  # core.secrets_box, purpose `edx_clients.secret:<id>`
    # The LMS to call back: its root URL, and the OAuth client it gave us (its secret sealed too).
    lms_url: Mapped[str] = mapped_column(String(1000))
    lms_client_id: Mapped[str | None] = mapped_column(String(200), default=None)
    lms_secret_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class EdxExam(Base):
    """An exam as the LMS saved it, with its rules; `exam_id` is the tenant's exam that holds the policy."""

    __tablename__ = "edx_exams"
    __table_args__ = (UniqueConstraint("client_pk", "lms_exam_id"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)  # the opaque id edX keeps
    client_pk: Mapped[str] = mapped_column(ForeignKey("edx_clients.id", ondelete="CASCADE"))
    lms_exam_id: Mapped[int] = mapped_column(Integer)
    course_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_practice: Mapped[bool] = mapped_column(Boolean, default=False)
    is_proctored: Mapped[bool] = mapped_column(Boolean, default=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EdxAttempt(Base):
    """A learner's attempt as edX registered it; `session_id` is set once its recorder starts."""

    __tablename__ = "edx_attempts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)  # opaque: a capability
    edx_exam_pk: Mapped[str] = mapped_column(ForeignKey("edx_exams.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)  # edX's anonymised user id
    status: Mapped[str] = mapped_column(String(24), default="created")
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorder_seen_at: Mapped[datetime | None] = mapped_column(default=None)  # the recorder's last heartbeat


class EdxTokenId(Base):
    """A `jti` of an instructor JWT already used: a replay is refused until the token expires."""

    __tablename__ = "edx_token_ids"
    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_pk: Mapped[str] = mapped_column(ForeignKey("edx_clients.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime]


class SessionCallback(Base):
    """A delivery a session's event owes besides the tenant's webhook, e.g. edX's `reviewed` callback."""

    __tablename__ = "session_callbacks"
    __table_args__ = (UniqueConstraint("session_id", "event", "channel"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(48))  # e.g. review.final
    channel: Mapped[str] = mapped_column(String(16))  # a sender channel, e.g. openedx
    url: Mapped[str] = mapped_column(String(1000))
    ref: Mapped[str | None] = mapped_column(String(64), default=None)  # the channel's credential, e.g. an EdxClient
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
