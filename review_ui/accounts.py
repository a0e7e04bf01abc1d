"""Reviewer accounts: Argon2id passwords, an account-wide failure limit, server-side browser sessions, scopes.

Each sign-in attempt is counted on its account before its password is checked, by one atomic
`UPDATE ... RETURNING`, and that statement also locks the account when the count reaches the limit: parallel
guesses cannot read the same count and all go ahead. The limit here is the backstop against guessing spread
over many addresses; the lockout a reviewer meets is per username and address (`review_ui.sign_in`).

A browser holds a random session token in an HttpOnly cookie; the database keeps only its SHA-256, next to
the CSRF token that every form of that session must echo. Logging out deletes the row, so a stolen cookie
dies with it; so do a password reset and disabling the account, for every session of that user. A disabled
account gets the one refusal every failed sign-in gets. A user sees the tenants and exams of their scopes; an
admin sees everything. A browser session may be narrower than its user: a course team member who arrives from
an LMS (`openedx`) sees only that course's exams, or one exam, or one attempt's session, in that browser.

Users who sign in through an LMS are made on their first visit with no usable password (`external_user`):
the login form can never sign them in.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, and_, bindparam, case, delete, false, or_, select, true, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.dml import ReturningUpdate

from core.tables import Exam, ExamSession, Tenant, User, UserScope, WebSession
from core.vocabulary import Role
from review_ui.login_limits import Rate
from storage.keys import safe_identifier

MIN_PASSWORD_CHARS = 12
MAX_USERNAME_CHARS = 128
UNUSABLE_PASSWORD = "!"  # not an Argon2id hash: no password matches it (`Passwords.matches`)
# The one answer to a refused sign-in, whatever the reason, so that it never tells which usernames exist.
REFUSED_MESSAGE = (
    "Wrong username or password, or sign-in locked after too many failed attempts: check them, or wait "
    "a few minutes and try again."
)


class AccountError(ValueError):
    """A user could not be created or assigned; the message says what to change."""


class LoginRefused(Exception):
    """A refused sign-in. Its message is always `REFUSED_MESSAGE`; `reason` is for the audit trail only."""

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSED_MESSAGE)
        self.reason = reason  # no_account, account_disabled, account_locked, wrong_password or address_locked


@dataclass(frozen=True)
class LoginPolicy:
    """How sign-in resists guessing; `proctor.wiring` fills it from the `PROCTOR_LOGIN_*` settings."""

    max_failures: int  # failures of one username from one address within `lockout`
    lockout: timedelta
    account_max_failures: int  # failures of one account from all addresses together (the backstop)
    per_address: Rate  # attempts from one address, whatever the username
    per_username: Rate  # attempts on one username, whatever the address
    hash_slots: int  # password hashes at once
    hash_wait_s: float  # how long an attempt waits for a hash slot


@dataclass(frozen=True)
class Passwords:
    """The Argon2id hasher, and the hash of a random password that is checked when there is no account to check,
    so that an unknown username costs the same time as a wrong password."""

    hasher: PasswordHasher
    dummy_hash: str

    @classmethod
    def using(cls, hasher: PasswordHasher) -> Passwords:
        return cls(hasher, hasher.hash(secrets.token_urlsafe(16)))

    def matches(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; with no stored hash, the same work and False."""
        try:
            return self.hasher.verify(stored or self.dummy_hash, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True)
class Scope:
    """What one user may see: whole tenants, single exams, or everything (admins); and what one browser session
    of theirs narrows that to: only these exams (`only_exam_ids`), only these sessions (`only_session_ids`).
    None is "not narrowed"; an empty set sees nothing."""

    everything: bool
    tenant_ids: frozenset[str]
    exam_ids: frozenset[str]
    only_exam_ids: frozenset[str] | None = None
    only_session_ids: frozenset[str] | None = None

    def narrowed(self, exam_ids: Collection[str] | None, session_id: str | None) -> Scope:
        """This scope, seen through a browser session that keeps only `exam_ids` and/or `session_id`."""
        return replace(
            self,
            only_exam_ids=frozenset(exam_ids) if exam_ids is not None else self.only_exam_ids,
            only_session_ids=frozenset({session_id}) if session_id is not None else self.only_session_ids,
        )

    @property
    def is_narrowed(self) -> bool:
        return self.only_exam_ids is not None or self.only_session_ids is not None

    def sessions_clause(self) -> ColumnElement[bool]:
        """A WHERE clause on `ExamSession` that keeps only what this scope may see."""
        clause = self._clause(ExamSession.tenant_id, ExamSession.exam_id)
        if self.only_session_ids is not None:
            clause = and_(clause, ExamSession.id.in_(self.only_session_ids))
        return clause

    def tenants_clause(self) -> ColumnElement[bool]:
        """A WHERE clause on `Tenant` that keeps the tenants this scope sees whole (not those it sees one exam of);
        a narrowed scope sees no tenant whole."""
        if self.is_narrowed:
            return false()
        if self.everything:
            return true()
        return Tenant.id.in_(self.tenant_ids) if self.tenant_ids else false()

    def exams_clause(self) -> ColumnElement[bool]:
        """A WHERE clause on `Exam` that keeps only the exams this scope may see."""
        return self._clause(Exam.tenant_id, Exam.id)

    def _clause(
        self, tenant_id: InstrumentedAttribute[str], exam_id: InstrumentedAttribute[str]
    ) -> ColumnElement[bool]:
        users: ColumnElement[bool]
        if self.everything:
            users = true()
        elif not self.tenant_ids and not self.exam_ids:
            return false()
        else:
            users = or_(tenant_id.in_(self.tenant_ids), exam_id.in_(self.exam_ids))
        return users if self.only_exam_ids is None else and_(users, exam_id.in_(self.only_exam_ids))

    def allows(self, tenant_id: str, exam_id: str) -> bool:
        """Whether this scope sees the exam (a scope narrowed to sessions may still see only some of its sessions)."""
        users = self.everything or tenant_id in self.tenant_ids or exam_id in self.exam_ids
        return users and (self.only_exam_ids is None or exam_id in self.only_exam_ids)


@dataclass(frozen=True)
class SignedIn:
    user: User
    csrf_token: str
    scope: Scope


def password_hasher() -> PasswordHasher:
    return PasswordHasher()  # Argon2id with the library's RFC 9106 low-memory profile (64 MiB)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(db: Session, username: str, password: str, role: Role) -> User:
    safe_identifier("username", username)
    _check_password(password)
    if db.scalar(select(User).where(User.username == username)) is not None:
        raise AccountError(f"user {username!r} already exists")
    user = User(username=username, password_hash=password_hasher().hash(password), role=role.value)
    db.add(user)
    db.flush()
    return user


def external_user(db: Session, username: str, role: Role) -> User:
    """The user an outside sign-in stands for (an LMS's course team member), made on first use with no usable
    password, so the login form never signs them in; an existing one is returned as it is."""
    if not 0 < len(username) <= MAX_USERNAME_CHARS or not username.isprintable():
        raise AccountError(f"a username is 1 to {MAX_USERNAME_CHARS} printable characters, not {username!r}")
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username, password_hash=UNUSABLE_PASSWORD, role=role.value)
        db.add(user)
        db.flush()
    return user


def user_named(db: Session, username: str) -> User:
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}; `proctor users add {username}` creates one")
    return user


def set_password(db: Session, user: User, password: str) -> int:
    """Replace a user's password (and lift a lockout), and sign out every browser of theirs: whoever knew the old
    password cannot stay in. Returns how many sessions were closed."""
    _check_password(password)
    user.password_hash, user.failed_logins, user.locked_until = password_hasher().hash(password), 0, None
    db.flush()
    return close_user_web_sessions(db, user)


def disable_user(db: Session, user: User, now: datetime) -> int:
    """Refuse the user's sign-ins from now on and close every browser session of theirs; returns how many."""
    if user.disabled_at is not None:
        raise AccountError(
            f"user {user.username!r} was already disabled at {user.disabled_at.isoformat(timespec='seconds')}"
        )
    user.disabled_at = now
    db.flush()
    return close_user_web_sessions(db, user)


def enable_user(db: Session, user: User) -> None:
    """Let a disabled user sign in again (with the password they had; `set_password` to give a new one)."""
    if user.disabled_at is None:
        raise AccountError(f"user {user.username!r} is not disabled")
    user.disabled_at = None
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


def authenticate(
    db: Session, username: str, password: str, now: datetime, policy: LoginPolicy, passwords: Passwords
) -> User:
    """The user for these credentials, or `LoginRefused`, at the cost of one password check either way.

    Commits the attempt's count before the slow check, so that parallel attempts see it (and SQLite's write
    lock is not held through the hash); a correct password then clears the count (the caller commits that).
    """
    claimed = db.execute(
        _claim_attempt(username, now, policy), execution_options={"synchronize_session": False}
    ).one_or_none()
    db.commit()
    if claimed is None:  # no such user, disabled, or locked: the same work, the same answer
        passwords.matches(None, password)
        found = db.execute(select(User.disabled_at).where(User.username == username)).one_or_none()
        raise LoginRefused(
            "no_account" if found is None else "account_disabled" if found.disabled_at else "account_locked"
        )
    user_id, stored = claimed
    if not passwords.matches(stored, password):
        raise LoginRefused("wrong_password")
    user = db.get(User, user_id)
    if user is None:  # deleted since the claim
        raise LoginRefused("no_account")
    user.failed_logins, user.locked_until = 0, None
    if passwords.hasher.check_needs_rehash(stored):
        user.password_hash = passwords.hasher.hash(password)
    db.flush()
    return user


def _claim_attempt(username: str, now: datetime, policy: LoginPolicy) -> ReturningUpdate[str, str]:
    """Count one attempt on an enabled, unlocked account and return its id and hash; lock it at the limit.

    All in one statement, whose SET clauses read the row as it was, so no two attempts see the same count.
    """
    reaches_limit = User.failed_logins + 1 >= policy.account_max_failures
    until = bindparam("locked_until", now + policy.lockout, type_=User.__table__.c.locked_until.type)
    return (
        update(User)
        .where(
            User.username == username,
            User.disabled_at.is_(None),
            or_(User.locked_until.is_(None), User.locked_until <= now),
        )
        .values(
            failed_logins=case((reaches_limit, 0), else_=User.failed_logins + 1),
            locked_until=case((reaches_limit, until), else_=None),
        )
        .returning(User.id, User.password_hash)
    )


def open_web_session(
    db: Session,
    user: User,
    now: datetime,
    ttl: timedelta,
    *,
    only_exam_ids: Collection[str] | None = None,
    only_session_id: str | None = None,
) -> str:
    """Start a browser session and return its token (for the cookie; only its hash is stored). The session sees
    what its user's scopes allow, narrowed to `only_exam_ids` and `only_session_id` where given."""
    token = secrets.token_urlsafe(32)
    db.add(
        WebSession(
            token_sha256=_token_digest(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + ttl,
            scope_exam_ids=sorted(only_exam_ids) if only_exam_ids is not None else None,
            scope_session_id=only_session_id,
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
    return SignedIn(user, row.csrf_token, scope_of(db, user).narrowed(row.scope_exam_ids, row.scope_session_id))


def close_web_session(db: Session, token: str) -> None:
    db.execute(delete(WebSession).where(WebSession.token_sha256 == _token_digest(token)))


def close_user_web_sessions(db: Session, user: User) -> int:
    """Sign `user` out of every browser at once; returns how many sessions were open."""
    closed: int = db.execute(  # type: ignore[attr-defined]  # a DELETE's result has a rowcount
        delete(WebSession).where(WebSession.user_id == user.id)
    ).rowcount
    return closed
