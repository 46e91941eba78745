"""A partner app's calls flow gateway -> Kafka -> aggregator -> Redis/PostgreSQL -> registry.

Drives the running stack (`make up`) as its users would: the platform team bootstraps a
tenant with the console script, the tenant admin creates an app through the admin API, the
partner developer gets a token with a standard OAuth 2.0 client library and calls the gateway.
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from tests.e2e.conftest import AppFactory, SessionFactory
from tests.infra import Stack

pytestmark = pytest.mark.e2e

COUNT_TIMEOUT_S = 60.0


def _wait_for_count(admin: OAuth2Session, url: str, expected: int) -> dict[str, Any]:
    """Poll the registry until the app's 24 h count reaches `expected` (or time runs out)."""
    deadline = time.monotonic() + COUNT_TIMEOUT_S
    while True:
        app: dict[str, Any] = admin.get(url, timeout=10).json()
        if app["requests_24h"] >= expected or time.monotonic() > deadline:
            return app
        time.sleep(0.25)


def _days(start: datetime, end: datetime) -> set[str]:
    """The UTC days from `start` to `end`: a test may straddle midnight."""
    return {start.date().isoformat(), end.date().isoformat()}


def test_every_call_with_a_valid_token_is_counted_exactly_once(
    stack: Stack, admin: OAuth2Session, create_app: AppFactory, oauth_session: SessionFactory
) -> None:
    app_id, secret = create_app(["Alert.Read.All"])
    # The first call comes a moment after the app was created: the gateway must not refuse it.
    partner = oauth_session(app_id, secret)
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
    assert unknown.json()["error"]["code"] == "not_found"
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
    finished = datetime.now(UTC)
    assert app["trend_30d"][-1]["date"] == finished.date().isoformat()
    counted_days = {day["date"] for day in app["trend_30d"] if day["requests"]}
    assert counted_days <= _days(started, finished)
    assert sum(day["requests"] for day in app["trend_30d"]) == expected

    # Events of one app share a partition, in order: once one more call is counted, any
    # redelivery of the earlier ones would already show as a higher count.
    assert partner.get(f"{stack.gateway_url}/api/alerts", timeout=10).status_code == 200
    again = _wait_for_count(admin, f"{stack.registry_url}/v1/apps/{app_id}", expected + 1)
    assert again["requests_24h"] == expected + 1

    listed = admin.get(f"{stack.registry_url}/v1/apps", timeout=10).json()["apps"]
    assert [entry["requests_24h"] for entry in listed if entry["id"] == app_id] == [expected + 1]


def test_bad_tokens_are_refused_and_not_counted(
    stack: Stack, admin: OAuth2Session, create_app: AppFactory, oauth_session: SessionFactory
) -> None:
    app_id, secret = create_app(["Alert.Read.All"])
    partner = oauth_session(app_id, secret)
    token = partner.token["access_token"]
    # The app's own token with its signature broken: it names the app, but proves nothing.
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[::-1]}"

    refused = [
        requests.get(
            f"{stack.gateway_url}/api/alerts",
            headers={"Authorization": f"Bearer {bad}", "X-Request-Id": f"e2e-bad-{index}"},
            timeout=10,
        )
        for index, bad in enumerate([forged, "not-a-jwt", f"{head}.{body}."])
    ]
    for index, response in enumerate(refused):
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        assert response.json()["error"] == {
            "code": "invalid_token",
            "message": response.json()["error"]["message"],
            "target": f"e2e-bad-{index}",
        }

    # One good call after the refused ones. Events of one app are ordered in one partition,
    # so had a refused call been counted, it would be counted before this one.
    assert partner.get(f"{stack.gateway_url}/api/alerts", timeout=10).status_code == 200
    app = _wait_for_count(admin, f"{stack.registry_url}/v1/apps/{app_id}", 1)
    assert app["requests_24h"] == 1

    unknown_client = requests.post(
        f"{stack.registry_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("no-such-client", "wrong"),
        timeout=10,
    )
    assert unknown_client.status_code == 401
    assert unknown_client.json()["error"] == "invalid_client"
