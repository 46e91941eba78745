"""Registry under test: a fresh database migrated for the session, the app run in-process.

Its outbox relay publishes to an apps topic of the session's own, deleted at the end.

The app runs inside its real lifespan against the real PostgreSQL and Redis; httpx drives it
through ASGI, with the lifespan state handed to each request the way uvicorn does.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from capps_aggregator.migrate import upgrade_head
from capps_events import TopicSpec
from capps_kit.asgi import App, Receive, Scope, Send
from capps_kit.postgres import asyncpg_dsn
from capps_registry.app import build_api
from capps_registry.db import client_tenants
from capps_registry.migrations.runner import upgrade
from capps_registry.settings import RegistrySettings
from capps_registry.state import STATE_KEY, RegistryState
from capps_registry.tenants.service import create_tenant
from tests.infra import drop_database, throwaway_topics

REPO_ROOT = Path(__file__).resolve().parents[3]
ISSUER = "http://registry.test"
TEST_PEPPER = "test-pepper-" + uuid.uuid4().hex


# The login role the registry under test connects as (bound by row-level security); a role of
# its own, so these tests never change the password of the stack's registry role.
APP_ROLE = "capps_registry_test"
APP_PASSWORD = "capps-registry-test"


def with_database(database_url: str, name: str) -> str:
    """The same server URL pointing at database `name`."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def with_login(database_url: str, role: str, password: str) -> str:
    """The same database reached as another role."""
    parts = urlsplit(database_url)
    host = parts.hostname or ""
    netloc = f"{role}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def app_url(owner_url: str) -> str:
    """The URL the registry under test connects with: its own database, the app role."""
    return with_login(owner_url, APP_ROLE, APP_PASSWORD)


@asynccontextmanager
async def migrated_database(database_url: str) -> AsyncIterator[str]:
    """A uniquely named database holding the migrated registry schema, dropped after."""
    name = f"capps_registry_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(database_url, name)
        # alembic runs its own event loop, so it gets a thread of its own.
        await asyncio.to_thread(upgrade, url, TEST_PEPPER.encode(), app_url(url))
        # The usage tables the registry reads are the aggregator's, in the same database.
        await asyncio.to_thread(upgrade_head, url)
        yield url
    finally:
        await drop_database(admin, name)
        await admin.close()


@asynccontextmanager
async def compacted_topic(bootstrap_servers: str) -> AsyncIterator[str]:
    """A uniquely named compacted topic shaped like `capps.apps.v1`, deleted after."""
    name = f"capps.apps.test.{uuid.uuid4().hex[:12]}"
    spec = TopicSpec(name, partitions=6, configs={"cleanup.policy": "compact"})
    async with throwaway_topics(bootstrap_servers, [spec]):
        yield name


@pytest.fixture(scope="session")
async def registry_database(infra: Any) -> AsyncIterator[str]:
    """The session's migrated database, as the URL of its owner."""
    async with migrated_database(infra.database_url) as url:
        yield url


@pytest.fixture(scope="session")
async def owner_pool(registry_database: str) -> AsyncIterator[asyncpg.Pool]:
    """The session's database as its owner: for writing the aggregator's usage tables, which
    the registry only reads (the owner too is bound by the registry's tenant policies)."""
    pool = await asyncpg.create_pool(asyncpg_dsn(registry_database), min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def tenant_of(registry: "Running", client_id: str) -> str:
    """The tenant of a client, looked up the way the token endpoint does."""
    return (await client_tenants(registry.state.pool, [client_id]))[client_id]


@pytest.fixture(scope="session")
async def apps_topic(infra: Any) -> AsyncIterator[str]:
    """The session's apps topic, where the registry under test publishes app states."""
    async with compacted_topic(infra.kafka_bootstrap_servers) as name:
        yield name


@pytest.fixture(scope="session")
def registry_settings(infra: Any, registry_database: str, apps_topic: str) -> RegistrySettings:
    """Settings of the registry under test."""
    return RegistrySettings(
        database_url=app_url(registry_database),
        # A Redis database of their own: these tests set and clear the usage store's ready
        # marker, which must not mislead the stack's aggregator sharing the server.
        redis_url=with_database(infra.redis_url, "7"),
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        token_issuer=ISSUER,
        catalog_path=REPO_ROOT / "config" / "catalog.yaml",
        environment="test",
        registry_apps_topic=apps_topic,
        registry_secret_pepper=TEST_PEPPER,
    )


@dataclass(frozen=True, slots=True)
class Running:
    """The app under test, its state and a client speaking to it."""

    client: httpx.AsyncClient
    state: RegistryState
    asgi: App
    owner_url: str  # the database as its owner, for what the registry's role may not do

    def new_client(self, address: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
        """Another client of the same app (its own headers, e.g. a bearer token, and address)."""
        transport = httpx.ASGITransport(app=self.asgi, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=ISSUER, headers=headers)


@pytest.fixture(scope="session")
async def registry(
    registry_settings: RegistrySettings, registry_database: str
) -> AsyncIterator[Running]:
    """The app inside its lifespan, reached through httpx's ASGI transport."""
    async with serve_registry(registry_settings, registry_database) as running:
        yield running


@asynccontextmanager
async def serve_registry(settings: RegistrySettings, database: str) -> AsyncIterator[Running]:
    """A registry app with these settings inside its lifespan, through httpx's ASGI transport."""
    app = build_api(settings)
    async with app.router.lifespan_context(app) as lifespan_state:
        assert lifespan_state is not None

        async def served(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                scope["state"] = dict(lifespan_state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            yield Running(client, lifespan_state[STATE_KEY], served, database)


@dataclass(frozen=True, slots=True)
class Tenant:
    """A bootstrapped tenant and its admin client's credentials."""

    tenant_id: str
    client_id: str
    client_secret: str


async def new_tenant(registry: Running) -> Tenant:
    """A fresh tenant, made the way `registry tenant create` makes it."""
    made = await create_tenant(
        registry.state.pool, TEST_PEPPER.encode(), f"test-{uuid.uuid4().hex[:8]}"
    )
    return Tenant(made.tenant_id, made.client_id, made.client_secret)


async def token_for(registry: Running, client_id: str, secret: str, **form: str) -> str:
    """An access token via client_secret_post."""
    response = await registry.client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            **form,
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture
async def tenant(registry: Running) -> Tenant:
    """A fresh tenant per test."""
    return await new_tenant(registry)


@pytest.fixture
async def admin(registry: Running, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the admin API authenticated as the tenant's admin."""
    token = await token_for(registry, tenant.client_id, tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as client:
        yield client
