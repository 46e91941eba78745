"""Adding and deleting client secrets, with the two-active rule, audit and token revocation.

Rotation is: add a second secret, move the client over, delete the first. Deleting a secret
can also revoke every token the client holds (`revoke_tokens`), which cuts off a leaked
credential at once; for an app the gateways hear of it through the outbox.
"""

from datetime import datetime

from capps_registry.apps import repository as clients
from capps_registry.apps.service import lock_app, secret_view
from capps_registry.audit import repository as audit
from capps_registry.client_secrets.schemas import AdminClientOut, SecretCreate, SecretCreated
from capps_registry.db import Connection, tenant_transaction
from capps_registry.errors import ApiError
from capps_registry.models import Client, Principal
from capps_registry.oauth.credentials import MAX_ACTIVE_SECRETS, looks_like_client_id, new_secret
from capps_registry.outbox import repository as outbox
from capps_registry.state import RegistryState


def _secret_not_found(secret_id: str) -> ApiError:
    shown = secret_id if looks_like_client_id(secret_id) else "with this id"
    return ApiError(404, "not_found", f"no secret {shown}")


async def _add(
    conn: Connection,
    pepper: bytes,
    actor: Principal,
    client: Client,
    expires_at: datetime | None,
) -> SecretCreated:
    """Store a new secret for a client locked by the caller, unless two are already active."""
    if client.issuer is not None:
        raise ApiError(
            409,
            "external_app",
            f"this app signs in at its identity provider ({client.issuer}); it has no secrets here",
        )
    active = await clients.count_active_secrets(conn, client.id)
    if active >= MAX_ACTIVE_SECRETS:
        raise ApiError(
            409,
            "too_many_secrets",
            f"this client already has {MAX_ACTIVE_SECRETS} active secrets; delete one first",
        )
    secret = new_secret(pepper)
    stored = await clients.insert_secret(conn, client.id, secret, expires_at)
    await audit.record(
        conn,
        actor,
        f"{client.kind}.secret.create",
        app_id=client.id if client.kind == "app" else None,
        before=None,
        after={
            "secret": {
                "id": stored.id,
                "hint": stored.hint,
                "expires_at": stored.expires_at.isoformat() if stored.expires_at else None,
            }
        },
    )
    return SecretCreated(**secret_view(stored).model_dump(), client_secret=secret.value)


async def _delete(
    conn: Connection, actor: Principal, client: Client, secret_id: str, *, revoke_tokens: bool
) -> None:
    """Delete a secret of a client locked by the caller; optionally revoke its tokens."""
    removed = await clients.delete_secret(conn, client.id, secret_id)
    if removed is None:
        raise _secret_not_found(secret_id)
    if revoke_tokens:
        revoked = await clients.revoke_tokens(conn, client.id)
        if client.kind == "app":
            await outbox.enqueue(conn, client.id, "state", revoked.version)
    await audit.record(
        conn,
        actor,
        f"{client.kind}.secret.delete",
        app_id=client.id if client.kind == "app" else None,
        before={"secret": {"id": removed.id, "hint": removed.hint}},
        after={"tokens_revoked": revoke_tokens},
    )


async def add_app_secret(
    state: RegistryState, actor: Principal, app_id: str, body: SecretCreate
) -> SecretCreated:
    """A new secret for the app (shown once); 409 if it has two active already."""
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        client = await lock_app(conn, actor, app_id)
        return await _add(conn, state.settings.pepper, actor, client, body.expires_at)


async def delete_app_secret(
    state: RegistryState,
    actor: Principal,
    app_id: str,
    secret_id: str,
    *,
    revoke_tokens: bool = False,
) -> None:
    """Delete one of the app's secrets; it stops working at once."""
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        client = await lock_app(conn, actor, app_id)
        await _delete(conn, actor, client, secret_id, revoke_tokens=revoke_tokens)


async def _lock_admin_client(conn: Connection, actor: Principal) -> Client:
    client_id = await clients.admin_client_id(conn, actor.tenant_id)
    client = await clients.lock_client(conn, actor.tenant_id, client_id or "", "admin")
    if client is None:
        raise ApiError(404, "not_found", "this tenant has no admin client")
    return client


async def get_admin_client(state: RegistryState, actor: Principal) -> AdminClientOut:
    """The tenant's admin client and its secrets' metadata."""
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        client_id = await clients.admin_client_id(conn, actor.tenant_id)
        secrets = await clients.list_secrets(conn, client_id) if client_id else []
    if client_id is None:
        raise ApiError(404, "not_found", "this tenant has no admin client")
    return AdminClientOut(client_id=client_id, secrets=[secret_view(s) for s in secrets])


async def add_admin_secret(
    state: RegistryState, actor: Principal, body: SecretCreate
) -> SecretCreated:
    """A new secret for the tenant's admin client; 409 if it has two active already."""
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        client = await _lock_admin_client(conn, actor)
        return await _add(conn, state.settings.pepper, actor, client, body.expires_at)


async def delete_admin_secret(
    state: RegistryState, actor: Principal, secret_id: str, *, revoke_tokens: bool = False
) -> None:
    """Delete a secret of the admin client; with revoke_tokens, every admin token dies too."""
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        client = await _lock_admin_client(conn, actor)
        await _delete(conn, actor, client, secret_id, revoke_tokens=revoke_tokens)
