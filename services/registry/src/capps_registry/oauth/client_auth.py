"""Client authentication: client_secret_basic, client_secret_post (RFC 6749 §2.3.1) and
private_key_jwt (RFC 7523 §2.2, a JWT the client signed with its registered key)."""

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus

from capps_registry.oauth.assertions import (
    ASSERTION_TYPE,
    AssertionRefusedError,
    claimed_client_id,
)
from capps_registry.oauth.errors import OAuthError

AuthMethod = Literal["client_secret_basic", "client_secret_post"]
MAX_CREDENTIAL_LENGTH = 512


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """The client id and secret a caller presented, and how."""

    client_id: str
    client_secret: str
    method: AuthMethod


@dataclass(frozen=True, slots=True)
class ClientAssertion:
    """A signed client assertion and the client it claims to be (verified later)."""

    client_id: str
    assertion: str


def parse_basic(header: str) -> tuple[str, str]:
    """Decode `Basic base64(urlencode(id):urlencode(secret))`; raise invalid_client if malformed."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise OAuthError("invalid_client", "unsupported Authorization scheme; use Basic")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed Basic credentials") from None
    raw_id, colon, raw_secret = decoded.partition(":")
    if not colon:
        raise OAuthError("invalid_client", "malformed Basic credentials")
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    return unquote_plus(raw_id), unquote_plus(raw_secret)


def assertion_of(authorization: str | None, form: Mapping[str, str]) -> ClientAssertion:
    """The private_key_jwt credentials of the form, not verified yet; RFC 7521 §4.2 errors."""
    if authorization is not None or "client_secret" in form:
        raise OAuthError(
            "invalid_request", "use one client authentication method, not a secret and an assertion"
        )
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form.get("client_assertion")
    if not assertion:
        raise OAuthError("invalid_client", "client_assertion is required")
    try:
        client_id = claimed_client_id(assertion)
    except AssertionRefusedError as exc:
        raise OAuthError("invalid_client", exc.description) from None
    form_id = form.get("client_id")
    if form_id is not None and form_id != client_id:
        raise OAuthError("invalid_client", "client_id differs from the assertion's sub")
    if len(client_id) > MAX_CREDENTIAL_LENGTH or not client_id.isprintable():
        raise OAuthError("invalid_client", "client authentication failed")
    return ClientAssertion(client_id, assertion)


def authenticate_request(
    authorization: str | None, form: Mapping[str, str]
) -> ClientCredentials | ClientAssertion:
    """Pick the one authentication method the request used, or raise the RFC 6749 error."""
    if "client_assertion" in form or "client_assertion_type" in form:
        return assertion_of(authorization, form)
    form_id = form.get("client_id")
    form_secret = form.get("client_secret")
    if authorization is not None:
        client_id, client_secret = parse_basic(authorization)
        if form_secret is not None:
            raise OAuthError(
                "invalid_request", "use one client authentication method, not Basic and the body"
            )
        if form_id is not None and form_id != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
        method: AuthMethod = "client_secret_basic"
    elif form_id is not None and form_secret is not None:
        client_id, client_secret, method = form_id, form_secret, "client_secret_post"
    else:
        raise OAuthError("invalid_client", "client authentication is required")
    if not client_id or not client_secret:
        raise OAuthError("invalid_client", "client_id and client_secret must not be empty")
    if max(len(client_id), len(client_secret)) > MAX_CREDENTIAL_LENGTH or not (
        client_id.isprintable() and client_secret.isprintable()
    ):
        raise OAuthError("invalid_client", "client authentication failed")
    return ClientCredentials(client_id, client_secret, method)
