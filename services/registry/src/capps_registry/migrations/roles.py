"""The login role the registry service connects as, set up by `registry migrate` as the owner.

Its privileges come from membership in capps_registry_app (migration 0006); this only makes
sure the role named in REGISTRY_APP_DATABASE_URL exists, may log in with that password, and is
that member. The password reaches PostgreSQL as a SCRAM-SHA-256 verifier, never in clear, so
no statement log or error message can show it.
"""

import base64
import hashlib
import hmac
import os
from urllib.parse import unquote, urlsplit

import asyncpg

APP_GROUP_ROLE = "capps_registry_app"
SCRAM_ITERATIONS = 4096


class LoginRoleError(Exception):
    """REGISTRY_APP_DATABASE_URL names a role the service must not connect as."""


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, RFC 7677)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def login_of(app_database_url: str) -> tuple[str, str]:
    """The role name and password of a `postgresql://role:password@…` URL."""
    parts = urlsplit(app_database_url)
    if not parts.username or parts.password is None:
        raise LoginRoleError("REGISTRY_APP_DATABASE_URL must name a role and its password")
    return unquote(parts.username), unquote(parts.password)


async def ensure_login_role(
    conn: "asyncpg.Connection[asyncpg.Record]", app_database_url: str
) -> str:
    """Create or update the service's login role (connected as the owner); return its name."""
    role, password = login_of(app_database_url)
    if role == await conn.fetchval("SELECT current_user"):
        raise LoginRoleError(
            f"REGISTRY_APP_DATABASE_URL names {role}, the owner migrations run as; "
            "the service needs a role of its own"
        )
    found = await conn.fetchrow(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", role
    )
    if found is not None and (found["rolsuper"] or found["rolbypassrls"]):
        raise LoginRoleError(
            f"role {role} of REGISTRY_APP_DATABASE_URL is a superuser or has BYPASSRLS: "
            "row-level security would not bind it"
        )
    statements = await conn.fetchrow(
        "SELECT format('%s ROLE %I LOGIN PASSWORD %L', $1::text, $2::text, $3::text) AS role, "
        "format('GRANT %I TO %I', $4::text, $2::text) AS member",
        "ALTER" if found else "CREATE",
        role,
        scram_verifier(password),
        APP_GROUP_ROLE,
    )
    async with conn.transaction():
        await conn.execute(statements["role"])
        await conn.execute(statements["member"])
    return role
