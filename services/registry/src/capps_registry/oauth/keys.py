"""RS256 signing keys: generation, encryption at rest with Fernet, and the published JWKS."""

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import Key, KeySet, KeySetSerialization, RSAKey

RSA_BITS = 2048


class KeyDecryptionError(RuntimeError):
    """A stored signing key does not decrypt with REGISTRY_KEY_ENCRYPTION_KEY."""


def key_cipher(encryption_secret: str) -> Fernet:
    """A Fernet cipher derived from the configured secret, whatever its form."""
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"capps-registry signing keys"
    ).derive(encryption_secret.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A signing key row: the encrypted private key as PEM."""

    kid: str
    encrypted_pem: bytes
    created_at: datetime
    active: bool


def generate_key() -> RSAKey:
    """A new RSA 2048 key whose kid is its RFC 7638 thumbprint."""
    key = RSAKey.generate_key(RSA_BITS, parameters={"alg": "RS256", "use": "sig"})
    key.ensure_kid()
    return key


def seal_key(key: RSAKey, cipher: Fernet) -> bytes:
    """The private key as encrypted PEM, ready to store."""
    return cipher.encrypt(key.as_pem(private=True))


def open_key(stored: StoredKey, cipher: Fernet) -> RSAKey:
    """Decrypt a stored key back into a signing key carrying its kid."""
    try:
        pem = cipher.decrypt(stored.encrypted_pem)
    except InvalidToken:
        raise KeyDecryptionError(
            f"signing key {stored.kid} does not decrypt: REGISTRY_KEY_ENCRYPTION_KEY changed?"
        ) from None
    return RSAKey.import_key(pem, parameters={"kid": stored.kid, "alg": "RS256", "use": "sig"})


class SigningKeys:
    """The key that signs new tokens and every key whose tokens are still verified."""

    def __init__(self, active: RSAKey, all_keys: Sequence[RSAKey]) -> None:
        self._set(active, all_keys)

    def _set(self, active: RSAKey, all_keys: Sequence[RSAKey]) -> None:
        self.active = active
        self._all = list(all_keys)
        self.kids = frozenset(key.kid for key in all_keys if key.kid)
        self.key_set = KeySet(list[Key](all_keys))
        public: list[Key] = [RSAKey.import_key(key.as_dict(private=False)) for key in all_keys]
        self._jwks: KeySetSerialization = KeySet(public).as_dict(private=False)

    def replace_with(self, other: "SigningKeys") -> bool:
        """Take over another load's keys (a rotation or a retirement); whether anything changed."""
        if other.kid == self.kid and other.kids == self.kids:
            return False
        self._set(other.active, other._all)
        return True

    @property
    def kid(self) -> str:
        """The id of the signing key."""
        assert self.active.kid is not None
        return self.active.kid

    def jwks(self) -> KeySetSerialization:
        """The published key set: public parts only."""
        return self._jwks
