"""Token issuance and introspection, and loading (or creating) the signing key at start."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from capps_registry.db import Pool
from capps_registry.models import Client
from capps_registry.oauth import repository
from capps_registry.oauth.assertions import AssertionRefusedError, verify_assertion
from capps_registry.oauth.claims import build_claims, client_roles, issued_before, resolve_scope
from capps_registry.oauth.client_auth import ClientAssertion, ClientCredentials
from capps_registry.oauth.credentials import match_secret
from capps_registry.oauth.errors import OAuthError
from capps_registry.oauth.keys import SigningKeys, generate_key, key_cipher, open_key, seal_key
from capps_registry.oauth.tokens import LEEWAY_S, InvalidAccessTokenError, sign_token, verify_token
from capps_registry.settings import RegistrySettings

# last_used_at is written at most once a minute (the SQL says so too); remembering when this
# process last wrote it spares the token endpoint a database round trip on most calls.
TOUCH_EVERY_S = 60.0
_MAX_TOUCHED = 100_000
_touched: dict[str, float] = {}


def _touch_due(secret_id: str, now: float) -> bool:
    """Whether this process should write the secret's last use now (and note that it does)."""
    last = _touched.get(secret_id)
    if last is not None and now - last < TOUCH_EVERY_S:
        return False
    if len(_touched) >= _MAX_TOUCHED:
        _touched.clear()
    _touched[secret_id] = now
    return True


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed access token and what the token response says of it."""

    access_token: str
    expires_in: int
    scope: list[str]


class ClientRefusedError(OAuthError):
    """Client authentication failed; `reason` labels the refusal in metrics."""

    def __init__(
        self,
        reason: str,
        description: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__("invalid_client", description, status=status, headers=headers)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RotatedKeys:
    """What `registry keys rotate` did."""

    kid: str
    retired: list[str]
    deleted: list[str]


def keep_retired_seconds(settings: RegistrySettings) -> float:
    """How long a retired key stays published: every token it signed must have expired.

    Other registries sign with it until they reload their keys, and verifiers allow leeway.
    """
    return settings.token_ttl_seconds + LEEWAY_S + settings.registry_keys_reload_seconds


async def load_signing_keys(
    pool: Pool, encryption_secret: str, keep_retired_s: float = 0
) -> SigningKeys:
    """Load the active key and the recently retired ones, creating a first key if there is none.

    Two registries starting at once serialise on an advisory lock, and the second one finds
    the key the first stored, so there is never more than one key made for an empty table.
    """
    cipher = key_cipher(encryption_secret)
    stored = await repository.signing_keys(pool, keep_retired_s)
    if not any(key.active for key in stored):
        async with pool.acquire() as conn, conn.transaction():
            await repository.lock_signing_keys(conn)
            stored = await repository.signing_keys(conn, keep_retired_s)
            if not any(key.active for key in stored):
                key = generate_key()
                assert key.kid is not None
                await repository.insert_signing_key(conn, key.kid, seal_key(key, cipher))
                stored = await repository.signing_keys(conn, keep_retired_s)
    opened = [open_key(key, cipher) for key in stored]
    active = next(key for key, row in zip(opened, stored, strict=True) if row.active)
    return SigningKeys(active, opened)


async def rotate_signing_key(pool: Pool, settings: RegistrySettings) -> RotatedKeys:
    """A new active key; the old one is retired (still published), long-expired ones deleted."""
    cipher = key_cipher(settings.registry_key_encryption_key)
    key = generate_key()
    assert key.kid is not None
    keep = keep_retired_seconds(settings)
    async with pool.acquire() as conn, conn.transaction():
        await repository.lock_signing_keys(conn)
        retired = await repository.retire_active_keys(conn)
        await repository.insert_signing_key(conn, key.kid, seal_key(key, cipher))
        deleted = await repository.delete_retired_keys(conn, keep)
    return RotatedKeys(key.kid, retired, deleted)


async def authenticate_client(pool: Pool, pepper: bytes, credentials: ClientCredentials) -> Client:
    """The enabled client whose secret matches, or ClientRefusedError.

    An unknown client id runs the same query and the same comparisons (against decoys) as a
    known one with a wrong secret, so timing does not tell which client ids exist.
    """
    client, stored = await repository.find_client_and_secrets(pool, credentials.client_id)
    secret_id = match_secret(pepper, credentials.client_secret, stored)
    if client is None:
        raise ClientRefusedError("unknown_client", "client authentication failed")
    if secret_id is None:
        raise ClientRefusedError("bad_secret", "client authentication failed")
    if not client.enabled:
        raise ClientRefusedError("disabled", "client is disabled")
    if _touch_due(secret_id, time.monotonic()):
        await repository.touch_secret(pool, client.tenant_id, secret_id)
    return client


def assertion_audiences(settings: RegistrySettings) -> tuple[str, str]:
    """What an assertion's aud may name: the token endpoint URL or the issuer (RFC 7523 §3)."""
    return f"{settings.issuer}/oauth2/token", settings.issuer


async def authenticate_by_assertion(
    pool: Pool, settings: RegistrySettings, credentials: ClientAssertion
) -> Client:
    """The enabled client whose registered key signed a valid, unused assertion.

    The jti is recorded last, so an assertion refused for any other reason leaves no trace.
    """
    client, keys = await repository.find_client_and_keys(pool, credentials.client_id)
    if client is None or keys is None:
        # The same answer for an unknown client and one without keys: neither says which.
        raise ClientRefusedError("unknown_client", "client authentication failed")
    try:
        verified = verify_assertion(
            credentials.assertion, keys, client.id, assertion_audiences(settings), time.time()
        )
    except AssertionRefusedError as exc:
        raise ClientRefusedError(exc.reason, exc.description) from None
    if not client.enabled:
        raise ClientRefusedError("disabled", "client is disabled")
    keep_until = datetime.fromtimestamp(verified.keep_until, UTC)
    if not await repository.use_assertion_id(pool, client, verified.jti, keep_until):
        raise ClientRefusedError("replayed", "this assertion's jti was used before")
    return client


def issue_token(
    settings: RegistrySettings, keys: SigningKeys, client: Client, scope: str | None
) -> IssuedToken:
    """Sign an access token for `client` with the requested (or default) scope."""
    roles = resolve_scope(scope, client_roles(client.kind, client.permissions))
    claims = build_claims(
        issuer=settings.issuer,
        audience=settings.token_audience,
        client_id=client.id,
        tenant_id=client.tenant_id,
        roles=roles,
        issued_at=time.time(),
        ttl_seconds=settings.token_ttl_seconds,
    )
    return IssuedToken(sign_token(keys, claims), settings.token_ttl_seconds, roles)


async def introspect(
    pool: Pool, settings: RegistrySettings, keys: SigningKeys, caller: Client, token: str
) -> dict[str, Any]:
    """RFC 7662: a tenant's admin client sees its tenant's live tokens; all else is inactive."""
    inactive: dict[str, Any] = {"active": False}
    if caller.kind != "admin":
        return inactive
    try:
        verified = verify_token(keys, token, settings.issuer, settings.token_audience)
    except InvalidAccessTokenError:
        return inactive
    if verified.tenant_id != caller.tenant_id:
        return inactive
    # A deleted or disabled client's tokens stop being active at once, and those issued before
    # a disable stay dead after the app is enabled again.
    subject = await repository.find_client(pool, caller.tenant_id, verified.client_id)
    if subject is None or not subject.enabled or subject.tenant_id != caller.tenant_id:
        return inactive
    claims = verified.claims
    if issued_before(claims.get("iat"), subject.tokens_valid_after):
        return inactive
    # Report only what the client may still do: a permission revoked since issuance is gone.
    current = client_roles(subject.kind, subject.permissions)
    roles = [role for role in verified.roles if role in current]
    return {
        "active": True,
        "scope": " ".join(roles),
        "client_id": verified.client_id,
        "token_type": "Bearer",
        "exp": claims["exp"],
        "iat": claims.get("iat"),
        "sub": claims["sub"],
        "aud": claims["aud"],
        "iss": claims["iss"],
        "jti": claims.get("jti"),
        "tid": verified.tenant_id,
        "roles": roles,
    }
