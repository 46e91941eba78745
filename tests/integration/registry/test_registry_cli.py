"""The `registry` console script: migrate and tenant bootstrap, as the platform team runs them."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.registry.conftest import TEST_PEPPER, Running, token_for

pytestmark = pytest.mark.integration

REGISTRY_CLI = Path(sys.executable).with_name("registry")


async def run_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "REGISTRY_SECRET_PEPPER": TEST_PEPPER}
    return await asyncio.to_thread(
        subprocess.run,
        [str(REGISTRY_CLI), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,  # a generous deadline: a loaded machine starts Python slowly
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
        assert (await admin.get("/v1/apps")).json() == {"apps": [], "next_cursor": None}


async def test_rotate_secret_cuts_off_the_old_admin_credentials(
    registry: Running, registry_database: str
) -> None:
    done = await run_cli("tenant", "create", "--name", "Fabrikam", database_url=registry_database)
    created = json.loads(done.stdout)
    old_token = await token_for(registry, created["client_id"], created["client_secret"])

    rotated = await run_cli(
        "tenant",
        "rotate-secret",
        "--tenant-id",
        created["tenant_id"],
        database_url=registry_database,
    )
    assert rotated.returncode == 0, rotated.stderr
    fresh = json.loads(rotated.stdout)
    assert fresh["tenant_id"] == created["tenant_id"]
    assert fresh["client_id"] == created["client_id"]
    assert fresh["client_secret"] != created["client_secret"]
    assert fresh["client_secret"].startswith("capps_")

    # The old secret no longer gets a token, and the token it got before is refused.
    refused = await registry.client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": created["client_id"],
            "client_secret": created["client_secret"],
        },
    )
    assert refused.status_code == 401
    async with registry.new_client(Authorization=f"Bearer {old_token}") as old_admin:
        assert (await old_admin.get("/v1/apps")).status_code == 401
    new_token = await token_for(registry, fresh["client_id"], fresh["client_secret"])
    async with registry.new_client(Authorization=f"Bearer {new_token}") as admin:
        assert (await admin.get("/v1/apps")).status_code == 200
        audit = (await admin.get("/v1/audit")).json()["events"]
    assert [event["action"] for event in audit] == ["admin.secret.rotate", "tenant.create"]
    assert audit[0]["actor"] == "registry-cli"
    assert [event["via"] for event in audit] == ["cli", "cli"]
    assert fresh["client_secret"] not in json.dumps(audit)


async def test_rotate_secret_of_an_unknown_tenant_is_a_clear_error(
    registry_database: str,
) -> None:
    done = await run_cli(
        "tenant", "rotate-secret", "--tenant-id", "no-such-tenant", database_url=registry_database
    )
    assert done.returncode == 1
    assert "no tenant no-such-tenant" in done.stderr


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
