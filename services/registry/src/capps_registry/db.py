"""Type names for the asyncpg pool and connections the repositories take."""

from typing import TypeAlias

import asyncpg

Pool: TypeAlias = asyncpg.Pool
Connection: TypeAlias = asyncpg.Connection
CLIENT_COLUMNS = (
    "id, tenant_id, kind, name, description, enabled, permissions, rate_limit_per_minute, "
    "rate_limit_per_hour, created_at, updated_at, version, tokens_valid_after, issuer"
)
