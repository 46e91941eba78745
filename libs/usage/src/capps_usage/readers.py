"""Who may read the usage store's PostgreSQL tables: one role, granted by both sides.

The aggregator owns the tables and the registry reads them; either may migrate first, so each
calls `grant_readers` after its own migrations, and the grant lands once both have run.
The registry's login role is a member of READER_ROLE (registry migration 0006).
"""

import asyncpg

READER_ROLE = "capps_usage_reader"
# The read model's tables: counters by minute, day and route, and each app's last call.
READ_MODEL_TABLES = ("usage_minute", "usage_day", "usage_route_day", "app_last_seen")


async def grant_readers(conn: "asyncpg.Connection[asyncpg.Record]") -> list[str]:
    """Grant READER_ROLE SELECT on the read-model tables that exist; return their names.

    Run as the tables' owner. Nothing is granted while the role does not exist (the registry's
    migrations create it).
    """
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", READER_ROLE
    ):
        return []
    rows = await conn.fetch(
        "SELECT format('GRANT SELECT ON %I TO %I', c.relname, $2::text) AS grant, c.relname "
        "FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[]) "
        "AND pg_table_is_visible(c.oid)",
        list(READ_MODEL_TABLES),
        READER_ROLE,
    )
    for row in rows:
        await conn.execute(row["grant"])
    return [row["relname"] for row in rows]
