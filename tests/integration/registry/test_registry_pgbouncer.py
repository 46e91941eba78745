"""Behind PgBouncer in transaction mode, as platform teams often run PostgreSQL: with
DATABASE_STATEMENT_CACHE_SIZE=0 the registry serves concurrent admins, and its outbox relay
publishes, woken by NOTIFY on a direct session (REGISTRY_LISTEN_DATABASE_URL)."""

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from capps_kit.postgres import asyncpg_dsn
from capps_registry.settings import RegistrySettings
from tests.infra import free_port
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


def _pgbouncer() -> str:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if not found:
        pytest.fail("pgbouncer is not installed: apt-get install pgbouncer (.ci/run does)")
    return found


@pytest.fixture(scope="module")
def bouncer(database: str) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `database`; its URL, same role."""
    target = urlsplit(asyncpg_dsn(database))
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="capps-pgbouncer-"))
    workdir.chmod(0o755)  # it drops root for `nobody`, who must read its config
    config = workdir / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{target.path.lstrip('/')} = host={target.hostname} port={target.port}"
        f" dbname={target.path.lstrip('/')} user={target.username} password={target.password}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {workdir / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 200\nserver_reset_query =\n"
    )
    (workdir / "users.txt").write_text(f'"{target.username}" ""\n')
    for path in (config, workdir / "users.txt"):
        path.chmod(0o644)
    command = [_pgbouncer(), *(["-u", "nobody"] if os.geteuid() == 0 else []), str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, process.stderr.read() if process.stderr else b""
            assert time.monotonic() < deadline, "pgbouncer did not listen"
            time.sleep(0.05)
        yield target._replace(
            netloc=f"{target.username}:{target.password}@127.0.0.1:{port}"
        ).geturl()
    finally:
        process.terminate()
        process.communicate(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


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
