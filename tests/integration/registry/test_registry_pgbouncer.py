"""Behind PgBouncer in transaction mode, as platform teams often run PostgreSQL: with
DATABASE_STATEMENT_CACHE_SIZE=0 the registry serves concurrent admins, and its outbox relay
publishes, woken by NOTIFY on a direct session (REGISTRY_LISTEN_DATABASE_URL)."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from capps_registry.settings import RegistrySettings
from tests.infra import pgbouncer
from tests.integration.registry.conftest import (
    app_url,
    migrated_database,
    new_tenant,
    serve_registry,
    token_for,
)
from tests.integration.registry.test_registry_outbox import open_reader

pytestmark = pytest.mark.integration

SERVER_CONNECTIONS = 2
"""Fewer server connections than the registry's pool has clients: they must be shared."""


@pytest.fixture(scope="module")
async def database(infra: Any) -> AsyncIterator[str]:
    """A migrated database of its own, as the registry's role (direct, no pooler)."""
    async with migrated_database(infra.database_url) as url:
        yield app_url(url)


@pytest.fixture(scope="module")
def bouncer(database: str) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `database`; its URL, same role."""
    with pgbouncer(database, server_connections=SERVER_CONNECTIONS) as url:
        yield url


async def test_a_cached_statement_breaks_behind_a_transaction_pooler(bouncer: str) -> None:
    """Why the setting exists: a statement prepared in one transaction is gone in the next
    when that one runs on another server connection; with no cache, nothing is missing."""
    for cache, fails in ((100, True), (0, False)):
        user = await asyncpg.connect(bouncer, statement_cache_size=cache)
        other = await asyncpg.connect(bouncer)
        try:
            assert await user.fetchval("SELECT $1::int + 1", 1) == 2
            # The other client holds that server connection: the next query runs on another.
            async with other.transaction():
                await other.execute("SELECT 1")
                if fails:
                    with pytest.raises(asyncpg.InvalidSQLStatementNameError):
                        await user.fetchval("SELECT $1::int + 1", 2)
                else:
                    assert await user.fetchval("SELECT $1::int + 1", 2) == 3
        finally:
            await user.close()
            await other.close()


async def test_the_registry_serves_and_publishes_through_pgbouncer(
    infra: Any, bouncer: str, database: str, registry_settings: RegistrySettings, apps_topic: str
) -> None:
    settings = registry_settings.model_copy(
        update={
            "database_url": bouncer,
            "database_statement_cache_size": 0,
            "registry_listen_database_url": database,
            # Only NOTIFY, on the direct session, can wake the relay within the wait below.
            "registry_outbox_poll_seconds": 300.0,
        }
    )
    reader = await open_reader(infra.kafka_bootstrap_servers, apps_topic)
    try:
        async with serve_registry(settings, database) as running:
            tenant = await new_tenant(running)
            token = await token_for(running, tenant.client_id, tenant.client_secret)
            admin = running.client
            headers = {"Authorization": f"Bearer {token}"}

            async def create(number: int) -> str:
                created = await admin.post(
                    "/v1/apps",
                    json={"name": f"Pooled {number}", "permissions": ["Alert.Read.All"]},
                    headers=headers,
                )
                assert created.status_code == 201, created.text
                app_id: str = created.json()["id"]
                return app_id

            ids = await asyncio.gather(*(create(n) for n in range(8)))
            # Many admins at once: more transactions in flight than server connections.
            calls: list[Any] = []
            for app_id in ids:
                calls += [
                    admin.get(f"/v1/apps/{app_id}", headers=headers),
                    admin.get("/v1/apps?limit=5&sort=name", headers=headers),
                    admin.patch(
                        f"/v1/apps/{app_id}",
                        json={"rate_limit": {"per_minute": 250}},
                        headers=headers,
                    ),
                ]
            answers: list[httpx.Response] = await asyncio.gather(*calls)
            assert [a.status_code for a in answers if a.status_code >= 300] == []
            versions = {
                app_id: (await admin.get(f"/v1/apps/{app_id}", headers=headers)).json()["version"]
                for app_id in ids
            }
            await reader.wait_for(
                lambda: all(reader.latest_version(a) == v for a, v in versions.items()),
                timeout_s=30.0,
            )
    finally:
        await reader.consumer.stop()
