"""A partner app's calls flow gateway -> Kafka -> aggregator -> Redis/PostgreSQL -> registry.

Drives the running stack (`make up`) as its users would: the platform team bootstraps a
tenant with the console script, the tenant admin creates an app through the admin API, the
partner developer gets a token with a standard OAuth 2.0 client library and calls the gateway.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from tests.infra import Stack

pytestmark = pytest.mark.e2e

REGISTRY_CLI = Path(sys.executable).with_name("registry")
COUNT_TIMEOUT_S = 60.0


def _create_tenant() -> dict[str, str]:
    """The platform team's bootstrap: `registry tenant create --name NAME`."""
    done = subprocess.run(
        [str(REGISTRY_CLI), "tenant", "create", "--name", f"e2e-{uuid.uuid4().hex[:8]}"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
        timeout=60,
    )
    tenant: dict[str, str] = json.loads(done.stdout)
    assert set(tenant) == {"tenant_id", "client_id", "client_secret"}
    return tenant


def _session(stack: Stack, client_id: str, client_secret: str) -> OAuth2Session:
    """A client-credentials session of a standard OAuth 2.0 library, holding a fresh token."""
    session = OAuth2Session(
        client_id, client_secret, token_endpoint_auth_method="client_secret_basic"
    )
    session.fetch_token(f"{stack.registry_url}/oauth2/token", grant_type="client_credentials")
    return session


def _wait_for_count(admin: OAuth2Session, url: str, expected: int) -> dict[str, Any]:
    """Poll the registry until the app's 24 h count reaches `expected` (or time runs out)."""
    deadline = time.monotonic() + COUNT_TIMEOUT_S
    while True:
        app: dict[str, Any] = admin.get(url, timeout=10).json()
        if app["requests_24h"] >= expected or time.monotonic() > deadline:
            return app
        time.sleep(0.25)


@pytest.fixture(scope="module")
def admin(stack: Stack) -> OAuth2Session:
    tenant = _create_tenant()
    return _session(stack, tenant["client_id"], tenant["client_secret"])


def test_every_call_with_a_valid_token_is_counted_exactly_once(
    stack: Stack, admin: OAuth2Session
) -> None:
    created = admin.post(
        f"{stack.registry_url}/v1/apps",
        json={"name": "SIEM connector", "permissions": ["Alert.Read.All"]},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    app_id, secret = created.json()["id"], created.json()["client_secret"]
    partner = _session(stack, app_id, secret)
    started = datetime.now(UTC)

    ok = [partner.get(f"{stack.gateway_url}/api/alerts", timeout=10) for _ in range(20)]
    alert_id = ok[0].json()["value"][0]["id"]
    one = partner.get(f"{stack.gateway_url}/api/alerts/{alert_id}", timeout=10)
    forbidden = partner.get(f"{stack.gateway_url}/api/machines", timeout=10)
    unknown = partner.get(f"{stack.gateway_url}/api/nothing-here", timeout=10)
    anonymous = requests.get(f"{stack.gateway_url}/api/alerts", timeout=10)

    assert [response.status_code for response in ok] == [200] * 20
    assert one.status_code == 200
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["WWW-Authenticate"]
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"]
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")

    # 20 + 1 allowed, 1 forbidden, 1 unknown route: all carry a valid token, all count.
    expected = 23
    app = _wait_for_count(admin, f"{stack.registry_url}/v1/apps/{app_id}", expected)
    assert app["requests_24h"] == expected
    assert app["last_seen"] is not None
    last_seen = datetime.fromisoformat(app["last_seen"])
    assert started - timedelta(seconds=5) <= last_seen <= datetime.now(UTC) + timedelta(seconds=5)
    assert len(app["trend_30d"]) == 30
    assert app["trend_30d"][-1] == {"date": datetime.now(UTC).date().isoformat(), "requests": 23}
    assert sum(day["requests"] for day in app["trend_30d"]) == expected

    # A late redelivery would show up as a higher count; wait a little and look again.
    time.sleep(2)
    again = admin.get(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10).json()
    assert again["requests_24h"] == expected

    listed = admin.get(f"{stack.registry_url}/v1/apps", timeout=10).json()["apps"]
    assert [entry["requests_24h"] for entry in listed if entry["id"] == app_id] == [expected]


def test_bad_tokens_are_refused_and_not_counted(stack: Stack, admin: OAuth2Session) -> None:
    garbage = requests.get(
        f"{stack.gateway_url}/api/alerts",
        headers={"Authorization": "Bearer not-a-jwt", "X-Request-Id": "e2e-garbage-1"},
        timeout=10,
    )
    assert garbage.status_code == 401
    assert 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]
    assert garbage.json()["error"]["target"] == "e2e-garbage-1"

    unknown_client = requests.post(
        f"{stack.registry_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("no-such-client", "wrong"),
        timeout=10,
    )
    assert unknown_client.status_code == 401
    assert unknown_client.json()["error"] == "invalid_client"
