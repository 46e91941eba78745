"""Talk to the running stack as its users do: bootstrap a tenant, create an app, get tokens."""

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from dotenv import dotenv_values

TIMEOUT_S = 10
COUNT_TIMEOUT_S = 120.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def require_loopback(address: str) -> str:
    """`address` (a URL or host:port list) unchanged when every host is local, else exit.

    The bench generates load; it must never aim it at a machine someone else uses.
    """
    for part in address.split(","):
        target = part.strip()
        host = urlsplit(target if "//" in target else f"//{target}").hostname
        if host not in LOOPBACK:
            raise SystemExit(f"refusing to load {target!r}: the bench only targets 127.0.0.1")
    return address


@dataclass(frozen=True, slots=True)
class StackUrls:
    """Where the running parts listen, from `.local/stack.env` (exported by `make bench`)."""

    registry: str
    gateway: str
    upstream: str

    @classmethod
    def from_env(cls) -> "StackUrls":
        """Read the URLs `make up` wrote; fail with a hint when the stack is not up."""
        try:
            return cls(
                registry=require_loopback(os.environ["REGISTRY_URL"].rstrip("/")),
                gateway=require_loopback(os.environ["GATEWAY_URL"].rstrip("/")),
                upstream=require_loopback(
                    os.environ.get("DEMO_API_URL", "http://127.0.0.1:8090").rstrip("/")
                ),
            )
        except KeyError as missing:
            raise SystemExit(
                f"{missing} is not set: run `make bench` (it runs `make up`)"
            ) from None


def token(registry: str, client_id: str, client_secret: str) -> str:
    """A client-credentials access token."""
    response = requests.post(
        f"{registry}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, client_secret),
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    access_token: str = response.json()["access_token"]
    return access_token


def registry_environment() -> dict[str, str]:
    """This environment plus the stack's registry secrets, which only secrets.env holds.

    The CLI must digest the admin secret with the pepper the running registry has.
    """
    local = Path(__file__).resolve().parents[1] / os.environ.get("CAPPS_LOCAL_DIR", ".local")
    path = local / "secrets.env"
    # dotenv (pydantic-settings reads env files with it) reads the stack's quoted values.
    secrets = {key: value or "" for key, value in dotenv_values(path).items()}
    return {**os.environ, **secrets}


def new_tenant_admin(registry: str) -> str:
    """A fresh tenant made by `registry tenant create`; its admin's token."""
    cli = Path(sys.executable).with_name("registry")
    done = subprocess.run(
        [str(cli), "tenant", "create", "--name", f"bench-{uuid.uuid4().hex[:8]}"],
        capture_output=True,
        text=True,
        check=True,
        env=registry_environment(),
        timeout=60,
    )
    tenant = json.loads(done.stdout)
    return token(registry, tenant["client_id"], tenant["client_secret"])


def create_load_app(registry: str) -> tuple[str, str, str]:
    """A tenant and an app a load test cannot rate-limit: (app id, app token, admin token)."""
    admin = new_tenant_admin(registry)
    response = requests.post(
        f"{registry}/v1/apps",
        json={
            "name": "load generator",
            "permissions": ["Alert.Read.All"],
            "rate_limit": {"per_minute": 100_000_000, "per_hour": 1_000_000_000},
        },
        headers={"Authorization": f"Bearer {admin}"},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    app = response.json()
    return app["id"], token(registry, app["id"], app["client_secret"]), admin


def app_stats(registry: str, admin_token: str, app_id: str) -> dict[str, Any]:
    """One app with its stats, as the admin API serves it."""
    response = requests.get(
        f"{registry}/v1/apps/{app_id}",
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def wait_for_count(registry: str, admin: str, app_id: str, at_least: int) -> tuple[int, float]:
    """Poll until the registry shows at least `at_least` requests; (count, seconds waited)."""
    started = time.monotonic()
    while True:
        count = int(app_stats(registry, admin, app_id)["requests_24h"])
        waited = time.monotonic() - started
        if count >= at_least or waited > COUNT_TIMEOUT_S:
            return count, waited
        time.sleep(0.05)


def call_to_count_ms(
    urls: StackUrls, app_token: str, admin: str, app_id: str, samples: int
) -> list[float]:
    """Time from one call's response to its count in the registry, `samples` times."""
    latencies = []
    count = int(app_stats(urls.registry, admin, app_id)["requests_24h"])
    for _ in range(samples):
        requests.get(
            f"{urls.gateway}/api/alerts",
            headers={"Authorization": f"Bearer {app_token}"},
            timeout=TIMEOUT_S,
        ).raise_for_status()
        sent = time.monotonic()
        count, _waited = wait_for_count(urls.registry, admin, app_id, count + 1)
        latencies.append((time.monotonic() - sent) * 1000)
    return latencies


def _set_permissions(registry: str, admin: str, app_id: str, permissions: list[str]) -> None:
    requests.patch(
        f"{registry}/v1/apps/{app_id}",
        json={"permissions": permissions},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=TIMEOUT_S,
    ).raise_for_status()


def _wait_for_status(urls: StackUrls, app_token: str, status: int) -> float:
    """Poll the gateway every 5 ms until a call answers `status`; the seconds it took."""
    started = time.monotonic()
    while True:
        answered = requests.get(
            f"{urls.gateway}/api/alerts",
            headers={"Authorization": f"Bearer {app_token}"},
            timeout=TIMEOUT_S,
        ).status_code
        waited = time.monotonic() - started
        if answered == status:
            return waited
        if waited > COUNT_TIMEOUT_S:
            raise TimeoutError(f"the gateway still answers {answered}, not {status}")
        time.sleep(0.005)


def change_to_enforced_ms(
    urls: StackUrls, app_token: str, admin: str, app_id: str, samples: int
) -> list[float]:
    """Time from an admin's permission change to the gateway enforcing it, `samples` times.

    Each sample revokes the app's permission (the gateway must answer 403) or grants it back
    (200 again, since the token still carries the role): registry -> outbox -> Kafka ->
    every gateway's view.
    """
    latencies = []
    for index in range(samples):
        revoke = index % 2 == 0
        _set_permissions(urls.registry, admin, app_id, [] if revoke else ["Alert.Read.All"])
        latencies.append(_wait_for_status(urls, app_token, 403 if revoke else 200) * 1000)
    if samples % 2:
        _set_permissions(urls.registry, admin, app_id, ["Alert.Read.All"])
        _wait_for_status(urls, app_token, 200)
    return latencies
