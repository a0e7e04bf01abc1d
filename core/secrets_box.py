"""Secrets at rest: AES-256-GCM under one key from the settings (`PROCTOR_SECRETS_KEY`).

A sealed value is one printable string, `sb1:<key id>:<base64url(nonce || ciphertext || tag)>`, so it fits
the text columns that held the clear value (a 50-character webhook secret seals to 117 characters). The
version prefix lets a later format coexist; the key id (a hash of the key, not the key) turns "wrong key"
into an error that says so. Each value is sealed for a purpose (say `tenants.webhook_secret:<tenant id>`),
bound in as associated data: a sealed value copied to another row or column does not open.

In development a missing key is generated once under the data directory (mode 0600), as the embedded S3
server's credentials are; in production a missing key is an error that says what to set, raised when a
secret is first sealed or opened, so a deployment that uses no webhooks runs without one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sb1"
KEY_BYTES = 32
NONCE_BYTES = 12
DEV_KEY_FILE = "secrets.key"
GENERATE_HINT = "generate one with `openssl rand -base64 32` and keep it with your database backups"


class SecretBoxError(ValueError):
    """A secret could not be sealed or opened; the message says what to change."""


def new_key() -> str:
    """A fresh key in the form `PROCTOR_SECRETS_KEY` takes: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def decode_key(encoded: str) -> bytes:
    text = encoded.strip().replace("-", "+").replace("_", "/")  # either base64 alphabet, padded or not
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretBoxError(f"PROCTOR_SECRETS_KEY is not base64: {GENERATE_HINT}") from None
    if len(key) != KEY_BYTES:
        raise SecretBoxError(f"PROCTOR_SECRETS_KEY decodes to {len(key)} bytes, not {KEY_BYTES}: {GENERATE_HINT}")
    return key


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX + ":")


@dataclass(frozen=True)
class SecretBox:
    """Seals and opens secrets under one key; a box built with `missing` set refuses both, saying why."""

    key: bytes | None = field(repr=False)
    missing: str = ""

    def __post_init__(self) -> None:
        if self.key is not None and len(self.key) != KEY_BYTES:
            raise SecretBoxError(f"a secrets key is {KEY_BYTES} bytes, not {len(self.key)}: {GENERATE_HINT}")
        if self.key is None and not self.missing:
            raise SecretBoxError("a box without a key must say why it has none")

    @property
    def key_id(self) -> str:
        if self.key is None:
            return "none"
        return hashlib.sha256(b"proctor secrets key id\x00" + self.key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    def seal(self, plaintext: str, purpose: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._key()).encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{PREFIX}:{self.key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, sealed: str, purpose: str) -> str:
        what = purpose.split(":")[0]  # `tenants.webhook_secret:<id>` -> `tenants.webhook_secret`
        if not is_sealed(sealed):
            raise SecretBoxError(f"the {what} is stored in clear, from before secrets were sealed: issue a new one")
        key = self._key()
        _, key_id, payload = sealed.split(":", 2) if sealed.count(":") >= 2 else (PREFIX, "", "")
        if key_id != self.key_id:
            raise SecretBoxError(
                f"the {what} was sealed under key {key_id or '(none)'}, and PROCTOR_SECRETS_KEY is key {self.key_id}: "
                "set the key it was sealed under, or issue a new secret"
            )
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretBoxError(
                f"the sealed {what} does not open under key {self.key_id}: it was altered or copied from another "
                "row; issue a new secret"
            ) from None

    def _key(self) -> bytes:
        if self.key is None:
            raise SecretBoxError(self.missing)
        return self.key


def secret_box(encoded_key: str | None, *, production: bool, data_dir: Path) -> SecretBox:
    """The box for this deployment: under the configured key; without one, a development key kept in
    `data_dir`, or in production a box that refuses with what to set."""
    if encoded_key:
        return SecretBox(decode_key(encoded_key))
    if production:
        return SecretBox(
            None,
            missing=f"PROCTOR_SECRETS_KEY is unset: webhook secrets are encrypted at rest under it; {GENERATE_HINT}",
        )
    return SecretBox(decode_key(_dev_key(data_dir / DEV_KEY_FILE)))


def _dev_key(path: Path) -> str:
    """The development key under `path`, created whole (written aside, then linked) by the first process."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        with os.fdopen(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(new_key() + "\n")
        try:
            os.link(scratch, path)
        except FileExistsError:  # another process made it first: use theirs
            pass
        finally:
            scratch.unlink()
    return path.read_text().strip()
