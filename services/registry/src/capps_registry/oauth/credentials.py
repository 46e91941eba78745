"""Client secrets: generated with high entropy, stored only as a SHA-256 hash plus a hint.

A fast hash is right here: secrets are 32 random bytes, so there is nothing to brute-force,
and the token endpoint verifies one on every call.
"""

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

SECRET_BYTES = 32
HINT_LENGTH = 4


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A freshly generated secret: the plain value is shown once, only the hash is stored."""

    id: str
    value: str
    hash: bytes
    hint: str


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """What the store keeps of a secret that may still be used."""

    id: str
    hash: bytes


def hash_secret(value: str) -> bytes:
    """The SHA-256 digest stored in place of the secret."""
    return hashlib.sha256(value.encode()).digest()


def new_secret() -> NewSecret:
    """Generate a url-safe secret of 32 random bytes."""
    value = secrets.token_urlsafe(SECRET_BYTES)
    return NewSecret(
        id=str(uuid.uuid4()), value=value, hash=hash_secret(value), hint=value[-HINT_LENGTH:]
    )


def match_secret(presented: str, stored: Iterable[StoredSecret]) -> str | None:
    """The id of the stored secret equal to `presented`, compared in constant time, or None."""
    digest = hash_secret(presented)
    found = None
    for candidate in stored:
        # Compare against every candidate so the time taken does not say which one matched.
        if hmac.compare_digest(digest, candidate.hash):
            found = candidate.id
    return found


def new_client_id() -> str:
    """A client id (also the app id): a random uuid, safe in URLs and Redis keys."""
    return str(uuid.uuid4())


EXTERNAL_CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,199}$"
"""The client ids of external identity providers' apps the registry accepts."""
_EXTERNAL_CLIENT_ID = re.compile(EXTERNAL_CLIENT_ID_PATTERN)


def looks_like_client_id(value: str) -> bool:
    """Whether `value` could be an app id: one we issued or an external provider's client id."""
    return _EXTERNAL_CLIENT_ID.fullmatch(value) is not None
