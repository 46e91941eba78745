"""The public keys an app registers for private_key_jwt, validated strictly before storing.

Only public signature keys of the algorithms the token endpoint accepts, each with a unique
`kid`, a bounded number of them: a private member anywhere means the partner leaked its key
to us, so the whole set is refused rather than quietly stripped.
"""

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import import_key

MAX_KEYS = 5
MAX_KID_LENGTH = 128
MAX_KEY_CHARS = 2048
"""A 4096-bit RSA public JWK is about 750 characters; anything far larger is not a key."""
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
# Ed25519 is RFC 9864's name for what most libraries still call EdDSA.
ALGORITHMS_OF_KEY = {
    ("RSA", None): ("RS256", "PS256"),
    ("EC", "P-256"): ("ES256",),
    ("OKP", "Ed25519"): ("EdDSA", "Ed25519"),
}
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MEMBERS = {
    "RSA": frozenset({"n", "e"}),
    "EC": frozenset({"crv", "x", "y"}),
    "OKP": frozenset({"crv", "x"}),
}
_COMMON_MEMBERS = frozenset({"kty", "kid", "use", "alg", "key_ops"})


class KeySetError(ValueError):
    """The key set is refused; the message says which key and why."""


def key_algorithms(key: Mapping[str, Any]) -> tuple[str, ...]:
    """The algorithms a stored key verifies: its own `alg`, or all its type allows."""
    kty = key.get("kty")
    allowed = ALGORITHMS_OF_KEY.get((str(kty), None if kty == "RSA" else key.get("crv")), ())
    alg = key.get("alg")
    if alg is None:
        return allowed
    return (alg,) if alg in allowed else ()


def _rsa_bits(modulus: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()


def _check_kid(where: str, kid: Any, seen_kids: set[str]) -> None:
    """A kid is required and unique, so an assertion's header names exactly one key."""
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH or not kid.isprintable():
        raise KeySetError(f"{where}: kid is required (1 to {MAX_KID_LENGTH} printable characters)")
    if kid in seen_kids:
        raise KeySetError(f"{where}: kid {kid!r} is used twice")
    seen_kids.add(kid)


def _checked_key(index: int, key: Any, seen_kids: set[str]) -> dict[str, Any]:
    where = f"keys[{index}]"
    if not isinstance(key, dict):
        raise KeySetError(f"{where} must be a JSON object (a JWK)")
    if len(json.dumps(key)) > MAX_KEY_CHARS:
        raise KeySetError(f"{where} is larger than {MAX_KEY_CHARS} characters")
    private = sorted(_PRIVATE_MEMBERS & key.keys())
    if private:
        raise KeySetError(
            f"{where} holds private key material ({', '.join(private)}): register the public "
            "key only, and treat this private key as leaked"
        )
    kty = key.get("kty")
    if kty not in _MEMBERS:
        raise KeySetError(f"{where}: kty must be RSA, EC or OKP (public signature keys)")
    unknown = sorted(key.keys() - _COMMON_MEMBERS - _MEMBERS[kty])
    if unknown:
        raise KeySetError(f"{where}: unsupported members {', '.join(unknown)}")
    _check_kid(where, key.get("kid"), seen_kids)
    if key.get("use", "sig") != "sig":
        raise KeySetError(f"{where}: use must be sig")
    ops = key.get("key_ops", ["verify"])
    if not isinstance(ops, list) or not ops or any(op != "verify" for op in ops):
        raise KeySetError(f'{where}: key_ops may only be ["verify"]')
    if any(not isinstance(key[name], str) for name in _MEMBERS[kty] if name in key):
        raise KeySetError(f"{where}: key parameters must be strings")
    if not key_algorithms(key):
        raise KeySetError(
            f"{where}: must be RSA, EC P-256 or OKP Ed25519, with alg (if given) one of "
            + ", ".join(SIGNING_ALGORITHMS)
        )
    if kty == "RSA" and not MIN_RSA_BITS <= _rsa_bits(str(key.get("n", ""))) <= MAX_RSA_BITS:
        raise KeySetError(
            f"{where}: an RSA modulus must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
        )
    try:
        imported = import_key(dict(key))
    except (JoseError, ValueError, TypeError) as exc:
        raise KeySetError(f"{where} is not a valid {kty} key: {type(exc).__name__}") from None
    if imported.is_private:
        raise KeySetError(f"{where} holds private key material: register the public key only")
    return dict(key)


def checked_key_set(keys: Sequence[Any]) -> list[dict[str, Any]]:
    """The keys as they will be stored, or KeySetError naming the first problem."""
    if not 0 < len(keys) <= MAX_KEYS:
        raise KeySetError(f"keys must hold 1 to {MAX_KEYS} keys")
    seen: set[str] = set()
    return [_checked_key(index, key, seen) for index, key in enumerate(keys)]


def key_summary(keys: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the audit trail records of a key set: kid, type, alg and RFC 7638 thumbprint."""
    return [
        {
            "kid": key.get("kid"),
            "kty": key.get("kty"),
            "alg": key.get("alg"),
            "thumbprint": import_key(dict(key)).thumbprint(),
        }
        for key in keys
    ]
