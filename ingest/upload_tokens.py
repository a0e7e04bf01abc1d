"""Upload tokens: a bearer token `put_<secret>` that opens one session's uploads, and nothing else, to a browser.

A platform that embeds the recorder in a candidate's browser must not hand it the tenant's API key, which reads
and erases every session of the tenant. It asks for a token for the one session instead (`issue_upload_token`)
and gives the browser that. The token reads its session, adds the candidate's enrolment photo or clip to it, and
uploads and completes its media until it expires; every other route refuses it. Only the SHA-256 of a token is
stored (as for API keys, a fast hash is right: the secret is 256 random bits), and a token goes with its session:
erased, its tokens stop working.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.states import SessionState
from core.tables import ExamSession, UploadToken
from ingest.schemas import IngestError, UploadTokenOut

UPLOAD_TOKEN_PREFIX = "put_"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_upload_token(db: Session, session: ExamSession, ttl_s: int, now: datetime) -> UploadTokenOut:
    """A new token for `session`, valid `ttl_s` seconds from `now`, added to `db` (the caller commits)."""
    token = UPLOAD_TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=ttl_s)
    db.add(
        UploadToken(
            token_sha256=token_digest(token),
            tenant_id=session.tenant_id,
            session_id=session.id,
            expires_at=expires_at,
            created_at=now,
        )
    )
    return UploadTokenOut(token=token, session_id=session.id, expires_at=expires_at)


def upload_token_tenant(db: Session, token: str, session_id: str, now: datetime) -> str:
    """The tenant whose session `session_id` the token opens; raises the refusal (401, 403) otherwise."""
    row = db.get(UploadToken, token_digest(token)) if token.startswith(UPLOAD_TOKEN_PREFIX) else None
    if row is None:
        raise IngestError(
            401,
            "upload_token_invalid",
            "this upload token is unknown: check that it was copied whole, or ask the platform for a new one",
        )
    session = db.get(ExamSession, row.session_id)
    if session is None or session.state == SessionState.DELETED:
        raise IngestError(401, "upload_token_invalid", "this upload token's session was erased: it opens nothing")
    if row.expires_at <= now:
        raise IngestError(
            401,
            "upload_token_expired",
            f"this upload token expired at {row.expires_at.isoformat(timespec='seconds')}: ask the platform for a "
            "new one (the parts already uploaded are kept)",
        )
    if row.session_id != session_id:
        raise IngestError(
            403,
            "upload_token_wrong_session",
            f"this upload token opens session {row.session_id}, not {session_id}",
        )
    return row.tenant_id
