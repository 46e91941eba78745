"""RFC 7523 client assertions (private_key_jwt): every check of a JWT a client signed itself.

Pure: the caller supplies the client's registered keys, the accepted audiences and the time;
the single use of `jti` is the caller's to enforce, until `VerifiedAssertion.keep_until`.
"""

import json
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import import_key

from capps_registry.oauth.client_keys import SIGNING_ALGORITHMS, key_algorithms

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LENGTH = 8192
MAX_LIFETIME_S = 300
"""An assertion is for one request: a longer life only widens the window a stolen one works."""
LEEWAY_S = 30
MAX_JTI_LENGTH = 200


class AssertionRefusedError(ValueError):
    """The assertion fails a check; `reason` is a short label for metrics."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    """An assertion that passed every check but the single use of its `jti`."""

    jti: str
    keep_until: float
    """Until when the jti must stay refused: the assertion's exp plus the leeway it got."""


def _extract(value: str) -> jws.CompactSignature:
    if len(value) > MAX_ASSERTION_LENGTH:
        raise AssertionRefusedError("malformed", "the client assertion is too long")
    try:
        return jws.extract_compact(value.encode())
    except (JoseError, ValueError, UnicodeError):
        raise AssertionRefusedError(
            "malformed", "the client assertion is not a signed JWT"
        ) from None


def _claims(payload: bytes | None) -> dict[str, Any]:
    try:
        claims = json.loads(payload or b"")
    except (ValueError, UnicodeError):
        claims = None
    if not isinstance(claims, dict):
        raise AssertionRefusedError(
            "malformed", "the client assertion's payload is not a JSON object"
        )
    return claims


def claimed_client_id(value: str) -> str:
    """The client the assertion speaks for (its `sub`, else `iss`), before any verification."""
    claims = _claims(_extract(value).payload)
    subject = claims.get("sub", claims.get("iss"))
    if not isinstance(subject, str) or not subject:
        raise AssertionRefusedError("bad_issuer", "the client assertion needs iss and sub")
    return subject


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AssertionRefusedError("malformed", f"{name} must be a number (seconds since epoch)")
    return float(value)


def _check_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if alg == "none" or alg is None:
        raise AssertionRefusedError("bad_alg", "an unsigned assertion (alg none) is refused")
    if isinstance(alg, str) and alg.upper().startswith("HS"):
        raise AssertionRefusedError(
            "bad_alg", "symmetric algorithms (HS*) are refused: sign with your private key"
        )
    if alg not in SIGNING_ALGORITHMS:
        raise AssertionRefusedError(
            "bad_alg", f"alg {alg!r} is not accepted; use one of {', '.join(SIGNING_ALGORITHMS)}"
        )
    return str(alg)


def _verify_signature(
    signed: jws.CompactSignature, value: str, alg: str, keys: Sequence[Mapping[str, Any]]
) -> None:
    kid = signed.headers().get("kid")
    if not isinstance(kid, str):
        raise AssertionRefusedError("unknown_kid", "the assertion header needs the kid of your key")
    key = next((key for key in keys if key.get("kid") == kid), None)
    if key is None:
        raise AssertionRefusedError(
            "unknown_kid", f"no key registered for this app has kid {kid!r}"
        )
    if alg not in key_algorithms(key):
        raise AssertionRefusedError("bad_alg", f"key {kid!r} does not sign with {alg}")
    try:
        with warnings.catch_warnings():
            # EdDSA is deprecated by RFC 9864 in favour of Ed25519; both are accepted here.
            warnings.simplefilter("ignore", SecurityWarning)
            jws.deserialize_compact(value, import_key(dict(key)), algorithms=[alg])
    except (JoseError, ValueError):
        raise AssertionRefusedError(
            "bad_signature", "the assertion's signature does not verify"
        ) from None


def _check_claims(
    claims: Mapping[str, Any], client_id: str, audiences: Collection[str], now: float
) -> VerifiedAssertion:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRefusedError("bad_issuer", "iss and sub must both be the client id")
    aud = claims.get("aud")
    named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(one, str) and one in audiences for one in named):
        raise AssertionRefusedError(
            "bad_audience",
            "aud must be the token endpoint URL or the issuer: " + ", ".join(audiences),
        )
    exp = _number(claims, "exp")
    if exp is None:
        raise AssertionRefusedError("expired", "the assertion needs exp")
    if exp + LEEWAY_S <= now:
        raise AssertionRefusedError("expired", "the assertion has expired")
    iat = _number(claims, "iat")
    nbf = _number(claims, "nbf")
    if (iat is not None and iat > now + LEEWAY_S) or (nbf is not None and nbf > now + LEEWAY_S):
        raise AssertionRefusedError("not_yet_valid", "the assertion is not valid yet (iat or nbf)")
    if exp - min(iat if iat is not None else now, now) > MAX_LIFETIME_S + LEEWAY_S:
        raise AssertionRefusedError(
            "too_long", f"the assertion may live at most {MAX_LIFETIME_S} s (exp - iat)"
        )
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise AssertionRefusedError(
            "no_jti", f"the assertion needs a jti of 1 to {MAX_JTI_LENGTH} characters"
        )
    return VerifiedAssertion(jti, exp + LEEWAY_S)


def verify_assertion(
    value: str,
    keys: Sequence[Mapping[str, Any]],
    client_id: str,
    audiences: Collection[str],
    now: float,
) -> VerifiedAssertion:
    """Check alg, kid, signature, iss = sub = client_id, aud, exp, lifetime, nbf/iat and jti."""
    signed = _extract(value)
    alg = _check_alg(signed.headers())
    _verify_signature(signed, value, alg, keys)
    return _check_claims(_claims(signed.payload), client_id, audiences, now)
