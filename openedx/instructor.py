"""Open edX's instructor dashboard links: checking the JWT that edx-proctoring's `get_instructor_url` signs.

The LMS sends a course team member to `<our base>/api/v1/instructor/{client_id}/?jwt=<token>`, the token
signed (HS256) with the client secret we issued to that LMS and holding `course_id`, `user` (`id`,
`full_name`, `email`), `iss` (the client id), `jti`, `exp` (Unix seconds, edX gives a minute), and for the
narrower dashboards `exam_id` (the opaque exam id we gave edX), `attempt_id` (ours too) and `config`.

We accept HS256 only (no `none`, no other algorithm a forger could pick), an `iss` equal to the client id
of the URL, and an `exp` still ahead of us; a `jti` seen before is refused by the caller, who keeps them
until they expire (`core.lms_tables.EdxTokenId`). Pure: no I/O, the clock is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

ALGORITHM = "HS256"
USERNAME_PREFIX = "edx"
MAX_USERNAME_CHARS = 128  # `core.tables.User.username`
AGAIN = "open the proctoring dashboard from the LMS again"


class TokenRefused(Exception):
    """An instructor link that does not sign anyone in; `status` and `code` say why, the message what to do."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class InstructorToken:
    """What a checked instructor link says: who, for which course, and maybe which exam or attempt."""

    course_id: str
    user_id: str
    email: str | None
    full_name: str
    jti: str
    expires_at: datetime
    exam_id: str | None  # our EdxExam id
    attempt_id: str | None  # our EdxAttempt id


def verify_instructor_token(token: str, secret: str, client_id: str, now: datetime) -> InstructorToken:
    """The claims of `token` if `secret` signed it for `client_id` and it has not expired at `now`; else
    `TokenRefused` (403 bad_signature or wrong_issuer, 401 expired, 400 bad_token)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=client_id,
            options={"require": ["exp", "iss", "jti"], "verify_exp": False},
        )
    except jwt.InvalidIssuerError:
        raise TokenRefused(403, "wrong_issuer", f"this link was not issued by client {client_id}; {AGAIN}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRefused(400, "bad_token", f"the link's token has no {exc.claim!r} claim; {AGAIN}") from None
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.DecodeError):
        raise TokenRefused(
            403, "bad_signature", f"bad signature: this link is not signed with client {client_id}'s secret; {AGAIN}"
        ) from None
    except jwt.InvalidTokenError as exc:  # e.g. an `iat` or `nbf` in the future
        raise TokenRefused(400, "bad_token", f"the link's token is not valid ({exc}); {AGAIN}") from None
    exp = claims["exp"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenRefused(400, "bad_token", f"the link's `exp` is not a number of seconds; {AGAIN}")
    expires_at = datetime.fromtimestamp(exp, UTC)
    if expires_at <= now:
        raise TokenRefused(401, "expired", f"this link has expired; {AGAIN}")
    return InstructorToken(
        course_id=_text(claims, "course_id"),
        user_id=_text(claims.get("user") or {}, "id"),
        email=_optional(claims.get("user") or {}, "email"),
        full_name=_optional(claims.get("user") or {}, "full_name") or "",
        jti=_text(claims, "jti"),
        expires_at=expires_at,
        exam_id=_optional(claims, "exam_id"),
        attempt_id=_optional(claims, "attempt_id"),
    )


def _text(claims: object, name: str) -> str:
    value = _optional(claims, name)
    if value is None:
        raise TokenRefused(400, "bad_token", f"the link's token has no {name!r}; {AGAIN}")
    return value


def _optional(claims: object, name: str) -> str | None:
    if not isinstance(claims, dict):
        raise TokenRefused(400, "bad_token", f"the link's `user` is not an object; {AGAIN}")
    value = claims.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TokenRefused(400, "bad_token", f"the link's {name!r} is not a string; {AGAIN}")
    return str(value)


def instructor_username(client_id: str, token: InstructorToken) -> str:
    """The review UI user a course team member is: `edx:<client id>:<email>`, or `...:<edX user id>` when the
    LMS sent no email or it would not fit a username."""
    prefix = f"{USERNAME_PREFIX}:{client_id}:"
    if token.email and len(prefix + token.email) <= MAX_USERNAME_CHARS:
        return prefix + token.email
    return prefix + token.user_id


def instructor_email(client_id: str, username: str) -> str | None:
    """The edX email a review UI username stands for, if it is a course team member of `client_id` known by
    email; None for our own reviewers and for other LMSs' users."""
    prefix = f"{USERNAME_PREFIX}:{client_id}:"
    rest = username.removeprefix(prefix)
    return rest if rest != username and "@" in rest else None
