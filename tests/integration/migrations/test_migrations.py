"""Both services' migrations on a real PostgreSQL: up, all the way down, and up again.

A downgrade that leaves something behind, or an upgrade that cannot run twice after one,
breaks the day an operator rolls a release back; the schema after the round trip must be
exactly the schema before it.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from alembic import command
from alembic.config import Config

from capps_aggregator.migrate import alembic_config as aggregator_config
from capps_kit.postgres import asyncpg_dsn
from capps_registry.migrations.runner import alembic_config as registry_config
from capps_usage.series import DAY_SERIES_SQL, MINUTE_SERIES_SQL
from tests.infra import drop_database

pytestmark = pytest.mark.integration

ConfigFactory = Callable[[str], Config]

# Everything a migration can create in the public schema, in a comparable form.
_SCHEMA_QUERY = """
SELECT 'column' AS kind, table_name || '.' || column_name || ' ' || data_type
       || ' null=' || is_nullable || ' default=' || coalesce(column_default, '') AS what
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index', tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'function', proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'trigger', tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'policy', tablename || ' ' || policyname FROM pg_policies WHERE schemaname = 'public'
UNION ALL
SELECT 'type', typname FROM pg_type
WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd', 'c')
  AND typrelid = 0
ORDER BY 1, 2
"""


@pytest.fixture
async def empty_database(infra: Any) -> AsyncIterator[str]:
    """A new, empty database on the real server; dropped afterwards."""
    name = f"capps_migrations_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(infra.database_url)._replace(path=f"/{name}"))
    finally:
        await drop_database(admin, name)
        await admin.close()


async def _schema(database_url: str, version_table: str) -> list[tuple[str, str]]:
    """The public schema's objects, leaving out alembic's own version table."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(_SCHEMA_QUERY)
    finally:
        await connection.close()
    return [(row["kind"], row["what"]) for row in rows if version_table not in row["what"]]


async def _alembic(action: Callable[..., None], *args: Any) -> None:
    # alembic runs its own event loop, which cannot nest inside the test's.
    await asyncio.to_thread(action, *args)


@pytest.mark.parametrize(
    ("config_of", "version_table"),
    [
        pytest.param(registry_config, "alembic_version_registry", id="registry"),
        pytest.param(aggregator_config, "alembic_version_usage", id="usage-aggregator"),
    ],
)
async def test_upgrade_downgrade_upgrade_gives_the_same_schema(
    empty_database: str, config_of: ConfigFactory, version_table: str
) -> None:
    config = config_of(empty_database)
    await _alembic(command.upgrade, config, "head")
    upgraded = await _schema(empty_database, version_table)
    assert any(kind == "column" for kind, _ in upgraded)

    await _alembic(command.downgrade, config, "base")
    assert await _schema(empty_database, version_table) == []

    await _alembic(command.upgrade, config, "head")
    assert await _schema(empty_database, version_table) == upgraded


async def test_the_outbox_migration_announces_every_app_that_existed_before_it(
    empty_database: str,
) -> None:
    config = registry_config(empty_database)
    await _alembic(command.upgrade, config, "0001_initial")
    connection = await asyncpg.connect(asyncpg_dsn(empty_database))
    try:
        await connection.execute("INSERT INTO tenants (id, name) VALUES ('t1', 'contoso')")
        await connection.executemany(
            "INSERT INTO oauth_clients (id, tenant_id, kind, name, created_at, version) "
            "VALUES ($1, 't1', $2, $1, now() - make_interval(mins => $3), 3)",
            [("older-app", "app", 10), ("admin-client", "admin", 5), ("newer-app", "app", 1)],
        )
        await _alembic(command.upgrade, config, "0002_app_outbox")
        rows = await connection.fetch("SELECT app_id, kind, version FROM app_outbox ORDER BY id")
    finally:
        await connection.close()
    # Apps only (the admin client has no state to publish), oldest first, at their version.
    assert [tuple(row) for row in rows] == [
        ("older-app", "state", 3),
        ("newer-app", "state", 3),
    ]


async def test_the_covering_keys_keep_the_rows_and_answer_series_from_the_index_alone(
    empty_database: str,
) -> None:
    config = aggregator_config(empty_database)
    await _alembic(command.upgrade, config, "0003_retention_indexes")
    connection = await asyncpg.connect(asyncpg_dsn(empty_database))
    try:
        await connection.execute(
            "INSERT INTO usage_minute (app_id, tenant_id, minute, requests, status_2xx) "
            "VALUES ('a1', 't1', '2026-11-30 10:00Z', 3, 3),"
            " ('a1', 't1', '2026-11-30 10:01Z', 4, 4)"
        )
        await connection.execute(
            "INSERT INTO usage_day (app_id, tenant_id, day, requests)"
            " VALUES ('a1', 't1', '2026-11-30', 7)"
        )
        await _alembic(command.upgrade, config, "head")
        # The upsert's ON CONFLICT still finds the key after it was swapped.
        await connection.execute(
            "INSERT INTO usage_minute AS t (app_id, tenant_id, minute, requests) "
            "VALUES ('a1', 't1', '2026-11-30 10:01Z', 5) "
            "ON CONFLICT (app_id, minute) DO UPDATE SET requests = t.requests + EXCLUDED.requests"
        )
        minutes = await connection.fetch(
            "SELECT minute, requests, status_2xx FROM usage_minute ORDER BY minute"
        )
        days = await connection.fetch("SELECT day, requests FROM usage_day")
        await connection.execute("VACUUM ANALYZE usage_minute, usage_day")
        # Tiny tables would be scanned whole; rule that out to see which index plan remains.
        await connection.execute("SET enable_seqscan = off")
        await connection.execute("SET enable_bitmapscan = off")
        plans = [
            await connection.fetchval(f"EXPLAIN (FORMAT JSON) {query}", "a1", *bounds)
            for query, bounds in (
                (MINUTE_SERIES_SQL, (datetime(2026, 11, 30, tzinfo=UTC),) * 2),
                (DAY_SERIES_SQL, (date(2026, 11, 1), date(2026, 11, 30))),
            )
        ]
    finally:
        await connection.close()
    assert [(row["requests"], row["status_2xx"]) for row in minutes] == [(3, 3), (9, 4)]
    assert [row["requests"] for row in days] == [7]
    assert [json.loads(plan)[0]["Plan"]["Node Type"] for plan in plans] == [
        "Index Only Scan",
        "Index Only Scan",
    ]
