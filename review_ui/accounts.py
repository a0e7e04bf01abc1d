"""Reviewer accounts: Argon2id passwords, lockout after repeated failures, server-side browser sessions, scopes.

A browser holds a random session token in an HttpOnly cookie; the database keeps only its SHA-256, next to
the CSRF token that every form of that session must echo. Logging out deletes the row, so a stolen cookie
dies with it. A user sees the tenants and exams of their scopes; an admin sees everything.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, delete, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.tables import Exam, ExamSession, Tenant, User, UserScope, WebSession
from core.vocabulary import Role
from storage.keys import safe_identifier

MIN_PASSWORD_CHARS = 12


class AccountError(ValueError):
    """A user could not be created or assigned; the message says what to change."""


class LoginRefused(Exception):
    """Wrong username or password, or a locked account. The message never says which user exists."""


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int
    lockout: timedelta


@dataclass(frozen=True)
class Scope:
    """What one user may see: whole tenants, single exams, or everything (admins)."""

    everything: bool
    tenant_ids: frozenset[str]
    exam_ids: frozenset[str]

    def sessions_clause(self) -> ColumnElement[bool]:
        """A WHERE clause on `ExamSession` that keeps only what this scope may see."""
        return self._clause(ExamSession.tenant_id, ExamSession.exam_id)

    def tenants_clause(self) -> ColumnElement[bool]:
        """A WHERE clause on `Tenant` that keeps the tenants this scope sees whole (not those it sees one exam of)."""
        if self.everything:
            return true()
        return Tenant.id.in_(self.tenant_ids) if self.tenant_ids else false()

    def exams_clause(self) -> ColumnElement[bool]:
        """A WHERE clause on `Exam` that keeps only the exams this scope may see."""
        return self._clause(Exam.tenant_id, Exam.id)

    def _clause(
        self, tenant_id: InstrumentedAttribute[str], exam_id: InstrumentedAttribute[str]
    ) -> ColumnElement[bool]:
        if self.everything:
            return true()
        if not self.tenant_ids and not self.exam_ids:
            return false()
        return or_(tenant_id.in_(self.tenant_ids), exam_id.in_(self.exam_ids))

    def allows(self, tenant_id: str, exam_id: str) -> bool:
        return self.everything or tenant_id in self.tenant_ids or exam_id in self.exam_ids


@dataclass(frozen=True)
class SignedIn:
    user: User
    csrf_token: str
    scope: Scope


def _hasher() -> PasswordHasher:
    return PasswordHasher()  # Argon2id with the library's RFC 9106 low-memory profile


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(db: Session, username: str, password: str, role: Role) -> User:
    safe_identifier("username", username)
    _check_password(password)
    if db.scalar(select(User).where(User.username == username)) is not None:
        raise AccountError(f"user {username!r} already exists")
    user = User(username=username, password_hash=_hasher().hash(password), role=role.value)
    db.add(user)
    db.flush()
    return user


def set_password(db: Session, user: User, password: str) -> None:
    """Replace a user's password (and lift a lockout)."""
    _check_password(password)
    user.password_hash, user.failed_logins, user.locked_until = _hasher().hash(password), 0, None
    db.flush()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")


def assign(db: Session, user: User, tenant_slug: str, exam_external_id: str | None = None) -> UserScope:
    """Let `user` see a whole tenant, or only one of its exams."""
    tenant = db.scalar(select(Tenant).where(Tenant.slug == tenant_slug))
    if tenant is None:
        raise AccountError(f"no tenant {tenant_slug!r}; `proctor tenants list` shows them")
    exam_id = None
    if exam_external_id is not None:
        exam = db.scalar(select(Exam).where(Exam.tenant_id == tenant.id, Exam.external_id == exam_external_id))
        if exam is None:
            raise AccountError(f"tenant {tenant_slug!r} has no exam {exam_external_id!r} yet")
        exam_id = exam.id
    scope = UserScope(user_id=user.id, tenant_id=tenant.id, exam_id=exam_id)
    db.add(scope)
    db.flush()
    return scope


def scope_of(db: Session, user: User) -> Scope:
    if user.role == Role.ADMIN:
        return Scope(True, frozenset(), frozenset())
    rows = db.execute(select(UserScope.tenant_id, UserScope.exam_id).where(UserScope.user_id == user.id)).all()
    return Scope(
        False,
        frozenset(t for t, e in rows if e is None),
        frozenset(e for _, e in rows if e is not None),
    )


def authenticate(db: Session, username: str, password: str, now: datetime, policy: LoginPolicy) -> User:
    """The user for these credentials; counts failures and locks the account after `max_failures`."""
    user = db.scalar(select(User).where(User.username == username, User.disabled_at.is_(None)))
    if user is None:
        _hasher().hash(password)  # same work as a real check, so timing does not reveal who exists
        raise LoginRefused("wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        raise LoginRefused("too many failed attempts: this account is locked for a while; try again later")
    try:
        _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        if user.failed_logins >= policy.max_failures:
            user.locked_until, user.failed_logins = now + policy.lockout, 0
        db.flush()
        raise LoginRefused("wrong username or password") from None
    user.failed_logins, user.locked_until = 0, None
    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = _hasher().hash(password)
    db.flush()
    return user


def open_web_session(db: Session, user: User, now: datetime, ttl: timedelta) -> str:
    """Start a browser session and return its token (for the cookie; only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    db.add(
        WebSession(
            token_sha256=_token_digest(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    db.flush()
    return token


def signed_in(db: Session, token: str, now: datetime) -> SignedIn | None:
    row = db.get(WebSession, _token_digest(token))
    if row is None or row.expires_at <= now:
        return None
    user = db.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    return SignedIn(user, row.csrf_token, scope_of(db, user))


def close_web_session(db: Session, token: str) -> None:
    db.execute(delete(WebSession).where(WebSession.token_sha256 == _token_digest(token)))
