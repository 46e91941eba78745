"""An app of an external identity provider, end to end, like any other app.

The tenant admin registers panva's oidc-provider client in the registry by its client id; a
gateway trusting that provider (started here beside the stack's own, on the stack's Kafka and
Redis) takes the provider's tokens for the app: its state, permissions and rate limit apply,
every call is one event, and the registry counts them.
"""

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from capps_kit.settings import API_AUDIENCE
from tests.e2e.conftest import _create_tenant
from tests.infra import Stack, free_port
from tests.integration.gateway.conftest import REPO, Gateway, _process, _wait_ready
from tests.integration.gateway.oidc_provider import AUDIENCE, OidcProvider, running_provider

pytestmark = pytest.mark.e2e

DEADLINE_S = 60.0
PER_MINUTE = 5


@pytest.fixture(scope="module")
def tenant() -> dict[str, str]:
    """A new tenant: its id and admin client."""
    return _create_tenant()


@pytest.fixture(scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    log_path = tmp_path_factory.mktemp("oidc") / "oidc-provider.log"
    async with running_provider([f"e2e-partner-{uuid.uuid4().hex[:8]}"], log_path) as found:
        yield found


@pytest.fixture(scope="module")
async def trusting_gateway(
    stack: Stack,
    provider: OidcProvider,
    tenant: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Gateway]:
    """A gateway of the stack that also trusts the provider, for the tenant."""
    folder = tmp_path_factory.mktemp("gateway-ext")
    issuers = folder / "issuers.json"
    entry = {
        "issuer": provider.issuer,
        "audience": AUDIENCE,
        "tenant_id": tenant["tenant_id"],
        "permission_claims": ["scope"],
    }
    issuers.write_bytes(orjson.dumps({"issuers": [entry]}))
    port, admin_port = free_port(), free_port()
    env = {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADMIN_PORT": str(admin_port),
        "GATEWAY_UPSTREAM_URL": os.environ["DEMO_API_URL"],
        "GATEWAY_SPOOL_DIR": str(folder / "spool"),
        "GATEWAY_ISSUERS_FILE": str(issuers),
        "TOKEN_ISSUER": stack.registry_url,
        "TOKEN_AUDIENCE": API_AUDIENCE,
        "CATALOG_PATH": str(REPO / "config" / "catalog.yaml"),
        "INSTANCE_ID": f"gw-e2e-ext-{uuid.uuid4().hex[:6]}",
    }
    log_path = folder / "gateway.log"
    with _process(["-m", "capps_gateway"], env, log_path) as process:
        admin_url = f"http://127.0.0.1:{admin_port}"
        await _wait_ready(f"{admin_url}/readyz", process, log_path)
        yield Gateway(f"http://127.0.0.1:{port}", admin_url, env["INSTANCE_ID"])


async def _admin_token(http: aiohttp.ClientSession, stack: Stack, tenant: dict[str, str]) -> str:
    async with http.post(
        f"{stack.registry_url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": tenant["client_id"],
            "client_secret": tenant["client_secret"],
        },
    ) as response:
        token: str = (await response.json())["access_token"]
        return token


async def _call(http: aiohttp.ClientSession, gateway: Gateway, path: str, token: str) -> int:
    async with http.get(gateway.url + path, headers={"Authorization": f"Bearer {token}"}) as r:
        await r.read()
        return r.status


async def _app(http: aiohttp.ClientSession, url: str, admin: str) -> dict[str, Any]:
    async with http.get(url, headers={"Authorization": f"Bearer {admin}"}) as response:
        found: dict[str, Any] = await response.json()
        return found


async def test_an_external_providers_app_is_limited_counted_and_controlled_like_any_other(
    stack: Stack,
    provider: OidcProvider,
    tenant: dict[str, str],
    trusting_gateway: Gateway,
) -> None:
    client_id = next(iter(provider.clients))
    async with aiohttp.ClientSession() as http:
        admin = await _admin_token(http, stack, tenant)
        headers = {"Authorization": f"Bearer {admin}"}
        body = {
            "name": "SIEM connector (external)",
            "permissions": ["Alert.Read.All"],
            "rate_limit": {"per_minute": PER_MINUTE, "per_hour": 1000},
            "external": {"issuer": provider.issuer, "client_id": client_id},
        }
        async with http.post(f"{stack.registry_url}/v1/apps", json=body, headers=headers) as r:
            created = await r.json()
            assert r.status == 201, created
        assert (created["id"], created["client_secret"]) == (client_id, None)
        app_url = f"{stack.registry_url}/v1/apps/{client_id}"

        token = await provider.token(http, client_id, "Alert.Read.All Machine.Read.All")
        # The first calls come a moment after registration: the gateway waits for the app.
        # Call until the app's rate limit answers 429: after its whole minute's allowance
        # (twice that if the minute rolls over mid-burst), never before.
        statuses: list[int] = []
        while 429 not in statuses:
            assert len(statuses) <= 3 * PER_MINUTE, f"never limited: {statuses}"
            statuses.append(await _call(http, trusting_gateway, "/api/alerts", token))
        assert set(statuses[:-1]) == {200}
        assert PER_MINUTE <= len(statuses) - 1 <= 2 * PER_MINUTE
        # The token carries Machine.Read.All; the registry never granted it (or still 429).
        machines = await _call(http, trusting_gateway, "/api/machines", token)
        assert machines in {403, 429}

        # Every call carried a valid token: all count, 403 and 429 included.
        expected = len(statuses) + 1
        deadline = time.monotonic() + DEADLINE_S
        while (app := await _app(http, app_url, admin))["requests_24h"] < expected:
            assert time.monotonic() < deadline, f"counted {app['requests_24h']} of {expected}"
            await asyncio.sleep(0.25)
        assert app["requests_24h"] == expected
        assert app["external"] == {"issuer": provider.issuer, "client_id": client_id}

        # The admin disables it: the provider's token is refused within moments.
        async with http.patch(app_url, json={"enabled": False}, headers=headers) as r:
            assert r.status == 200
        deadline = time.monotonic() + DEADLINE_S
        while await _call(http, trusting_gateway, "/api/alerts", token) != 403:
            assert time.monotonic() < deadline, "the disabled app's token still passes"
            await asyncio.sleep(0.1)
