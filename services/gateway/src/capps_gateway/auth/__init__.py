"""Bearer token authentication: JWKS keys, pure claim checks, cached RS256 verification."""

from capps_gateway.auth.claims import InvalidTokenError, Principal
from capps_gateway.auth.keys import JwksKeyStore
from capps_gateway.auth.verifier import KeysUnavailableError, TokenVerifier

__all__ = [
    "InvalidTokenError",
    "JwksKeyStore",
    "KeysUnavailableError",
    "Principal",
    "TokenVerifier",
]
