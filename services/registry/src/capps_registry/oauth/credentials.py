"""Client secrets: a scannable format, stored only as a keyed hash, matched in constant time.

A secret is `capps_` + 43 base62 characters (256 random bits) + a 6-character base62 CRC32 of
what precedes it, as GitHub's token format does: secret scanners recognise the prefix and
discard look-alikes whose checksum fails, without asking us.

Stored digest = HMAC-SHA-256(pepper, SHA-256(secret)). The pepper lives in settings, never in
the database, so a dump of the table alone verifies nothing. The inner SHA-256 is what the
registry stored before secrets were keyed: migration 0003 re-keyed those rows in place
(HMAC over the stored digest) without knowing any secret, so every secret issued before
keeps working and there is one verification path. A fast hash is right here: a secret holds
256 random bits, there is nothing to brute-force, and the token endpoint checks one per call.
"""

import hashlib
import hmac
import re
import secrets
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

SECRET_PREFIX = "capps_"  # noqa: S105 - the public prefix scanners look for
SECRET_BYTES = 32
HINT_LENGTH = 4
MAX_ACTIVE_SECRETS = 2
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LENGTH = 43  # ceil(256 / log2(62))
_CHECKSUM_LENGTH = 6  # ceil(32 / log2(62))
SECRET_LENGTH = len(SECRET_PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
# Unknown clients are compared against these, so they cost what a wrong secret costs.
_DECOYS = tuple(hashlib.sha256(f"decoy-{n}".encode()).digest() for n in range(MAX_ACTIVE_SECRETS))


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A freshly generated secret: the plain value is shown once, only the digest is stored."""

    id: str
    value: str
    hash: bytes
    hint: str


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """What the store keeps of a secret that may still be used."""

    id: str
    hash: bytes


def base62(number: int, width: int) -> str:
    """`number` in base62, left-padded with zeros to `width` characters."""
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(text: str) -> str:
    """The 6-character base62 CRC32 that ends a secret."""
    return base62(zlib.crc32(text.encode()), _CHECKSUM_LENGTH)


def format_secret(random_bytes: bytes) -> str:
    """The secret for 32 random bytes: prefix, base62 body, checksum."""
    head = SECRET_PREFIX + base62(int.from_bytes(random_bytes, "big"), _BODY_LENGTH)
    return head + checksum(head)


def looks_like_secret(value: str) -> bool:
    """Whether `value` has our format and a valid checksum (what a secret scanner checks)."""
    if len(value) != SECRET_LENGTH or not value.startswith(SECRET_PREFIX):
        return False
    head, tail = value[:-_CHECKSUM_LENGTH], value[-_CHECKSUM_LENGTH:]
    return all(char in _ALPHABET for char in value[len(SECRET_PREFIX) :]) and hmac.compare_digest(
        checksum(head), tail
    )


def secret_digest(pepper: bytes, value: str) -> bytes:
    """The keyed digest stored in place of a secret."""
    return rekey_legacy_digest(pepper, hashlib.sha256(value.encode()).digest())


def rekey_legacy_digest(pepper: bytes, sha256_digest: bytes) -> bytes:
    """HMAC-SHA-256 over a plain SHA-256 digest: the stored form, also of pre-0003 rows."""
    return hmac.new(pepper, sha256_digest, hashlib.sha256).digest()


def new_secret(pepper: bytes) -> NewSecret:
    """Generate a secret of 256 random bits in the scannable format."""
    value = format_secret(secrets.token_bytes(SECRET_BYTES))
    return NewSecret(
        id=str(uuid.uuid4()),
        value=value,
        hash=secret_digest(pepper, value),
        hint=value[-HINT_LENGTH:],
    )


def match_secret(pepper: bytes, presented: str, stored: Iterable[StoredSecret]) -> str | None:
    """The id of the stored secret equal to `presented`, compared in constant time, or None.

    Always compares against at least MAX_ACTIVE_SECRETS digests (decoys fill the gap), so an
    unknown client or one with fewer secrets takes as long as a wrong secret.
    """
    digest = secret_digest(pepper, presented)
    candidates = list(stored)
    padding = [StoredSecret("", decoy) for decoy in _DECOYS[len(candidates) :]]
    found = None
    for candidate in candidates + padding:
        # Compare against every candidate so the time taken does not say which one matched.
        if hmac.compare_digest(digest, candidate.hash) and candidate.id:
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
