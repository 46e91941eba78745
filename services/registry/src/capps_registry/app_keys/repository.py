"""SQL of an app's public key set, kept in `oauth_clients.jwks`."""

import json
from typing import Any

from capps_registry.db import Connection


async def app_keys(conn: Connection, app_id: str) -> list[dict[str, Any]]:
    """The app's registered public keys (empty if none), in a transaction acting for its tenant."""
    stored = await conn.fetchval("SELECT jwks FROM oauth_clients WHERE id = $1", app_id)
    keys: list[dict[str, Any]] = json.loads(stored)["keys"] if stored else []
    return keys


async def replace_app_keys(
    conn: Connection, app_id: str, keys: list[dict[str, Any]] | None
) -> None:
    """Store the app's key set (None removes it)."""
    await conn.execute(
        "UPDATE oauth_clients SET jwks = $2::jsonb, updated_at = now() WHERE id = $1",
        app_id,
        None if keys is None else json.dumps({"keys": keys}),
    )
