"""panva's oidc-provider (OpenID Certified) on Node.js, for tests of external issuers.

`oidc/` holds its package.json, the committed lock and `provider.mjs`; the first use installs
it with `npm ci`. The provider issues client-credentials JWT access tokens (RFC 9068) for one
resource indicator (RFC 8707) to the clients it is started with.
"""

import asyncio
import base64
import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.infra import free_port, running_process
from tests.integration.gateway.conftest import _tail

OIDC_DIR = Path(__file__).parent / "oidc"
RESOURCE = "urn:capps:platform-api"
AUDIENCE = "capps-platform-api"
SCOPES = "Alert.Read.All Machine.Read.All Machine.Isolate"
START_TIMEOUT_S = 60.0


def install() -> None:
    """`npm ci` from the committed lock, once (node_modules is not committed)."""
    if (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to install oidc-provider: apt-get install nodejs npm")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True, timeout=300)


@dataclass(frozen=True)
class OidcProvider:
    """The running oidc-provider: its issuer and its registered clients' credentials."""

    issuer: str
    clients: dict[str, str]

    async def token(self, http: aiohttp.ClientSession, client_id: str, scope: str) -> str:
        """A client-credentials access token for the platform API (RFC 8707 resource)."""
        basic = base64.b64encode(f"{client_id}:{self.clients[client_id]}".encode())
        async with http.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": scope, "resource": RESOURCE},
            headers={"Authorization": "Basic " + basic.decode()},
        ) as response:
            body = await response.json()
            assert response.status == 200, body
            token: str = body["access_token"]
            return token


@contextlib.asynccontextmanager
async def running_provider(client_ids: list[str], log_path: Path) -> AsyncIterator[OidcProvider]:
    """oidc-provider on a free loopback port with these clients (fresh secrets), until exit."""
    install()
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed for the oidc-provider tests: apt-get install nodejs npm")
    port = free_port()
    clients = {client_id: secrets.token_urlsafe(32) for client_id in client_ids}
    env = {
        "OIDC_PORT": str(port),
        "OIDC_CLIENTS": orjson.dumps(
            [{"client_id": cid, "client_secret": s, "scope": SCOPES} for cid, s in clients.items()]
        ).decode(),
        "OIDC_RESOURCE": RESOURCE,
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_SCOPES": SCOPES,
    }
    issuer = f"http://127.0.0.1:{port}"
    with running_process([node, "provider.mjs"], env, log_path, cwd=OIDC_DIR) as process:
        await _wait_up(issuer, process, log_path)
        yield OidcProvider(issuer, clients)


async def _wait_up(issuer: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while True:
            if process.poll() is not None:
                pytest.fail(f"oidc-provider exited:\n{_tail(log_path)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{issuer}/.well-known/openid-configuration") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                pytest.fail(f"oidc-provider not up:\n{_tail(log_path)}")
            await asyncio.sleep(0.2)
