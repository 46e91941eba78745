"""The `registry` console script: migrate and tenant bootstrap, as the platform team runs them."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.registry.conftest import Running, token_for

pytestmark = pytest.mark.integration

REGISTRY_CLI = Path(sys.executable).with_name("registry")


async def run_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return await asyncio.to_thread(
        subprocess.run,
        [str(REGISTRY_CLI), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_tenant_create_prints_working_admin_credentials(
    registry: Running, registry_database: str
) -> None:
    done = await run_cli("tenant", "create", "--name", "Contoso", database_url=registry_database)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert set(created) == {"tenant_id", "client_id", "client_secret"}
    token = await token_for(registry, created["client_id"], created["client_secret"])
    async with registry.new_client(Authorization=f"Bearer {token}") as admin:
        assert (await admin.get("/v1/apps")).json() == {"apps": []}


async def test_migrate_is_idempotent(registry_database: str) -> None:
    done = await run_cli("migrate", database_url=registry_database)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["", "   ", "bad/name", "x" * 101])
async def test_bad_tenant_names_are_refused(registry_database: str, name: str) -> None:
    done = await run_cli("tenant", "create", "--name", name, database_url=registry_database)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "tenant name must be" in done.stderr


async def test_unreachable_database_is_a_clear_error() -> None:
    done = await run_cli(
        "tenant", "create", "--name", "x", database_url="postgresql://capps:capps@127.0.0.1:1/none"
    )
    assert done.returncode == 1
    assert "PostgreSQL is not reachable" in done.stderr
    assert "Traceback" not in done.stderr
