"""What a tenant admin changes in the registry is enforced by the gateway, without new tokens.

registry -> outbox -> Kafka `capps.apps.v1` -> the gateway's local view: a revoked permission,
a disabled app and a deleted app are refused moments later, with tokens issued before.
"""

import time
from collections.abc import Callable

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from tests.e2e.conftest import AppFactory, SessionFactory
from tests.infra import Stack

pytestmark = pytest.mark.e2e

ENFORCE_TIMEOUT_S = 30.0


def _until(call: Callable[[], requests.Response], status: int) -> requests.Response:
    """Repeat `call` until it answers `status`; the last answer either way."""
    deadline = time.monotonic() + ENFORCE_TIMEOUT_S
    while True:
        response = call()
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def _token_answer(stack: Stack, client_id: str, secret: str) -> requests.Response:
    return requests.post(
        f"{stack.registry_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )


def test_revoked_permission_and_disabled_app_are_refused(
    stack: Stack, admin: OAuth2Session, create_app: AppFactory, oauth_session: SessionFactory
) -> None:
    app_id, secret = create_app(["Alert.Read.All", "Machine.Read.All"])
    app_url = f"{stack.registry_url}/v1/apps/{app_id}"
    partner = oauth_session(app_id, secret)

    def machines() -> requests.Response:
        response: requests.Response = partner.get(f"{stack.gateway_url}/api/machines", timeout=10)
        return response

    def alerts() -> requests.Response:
        response: requests.Response = partner.get(f"{stack.gateway_url}/api/alerts", timeout=10)
        return response

    assert machines().status_code == 200

    revoked = admin.patch(app_url, json={"permissions": ["Alert.Read.All"]}, timeout=10)
    assert revoked.status_code == 200, revoked.text
    refused = _until(machines, 403)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert alerts().status_code == 200

    assert admin.patch(app_url, json={"enabled": False}, timeout=10).status_code == 200
    disabled = _until(alerts, 403)
    assert disabled.status_code == 403
    assert disabled.json()["error"]["code"] == "app_disabled"
    assert _token_answer(stack, app_id, secret).status_code == 401

    # Re-enabled, the app works again, but tokens issued before it was disabled stay dead.
    assert admin.patch(app_url, json={"enabled": True}, timeout=10).status_code == 200
    stale = _until(alerts, 401)
    assert stale.status_code == 401
    assert 'error="invalid_token"' in stale.headers["WWW-Authenticate"]
    fresh = oauth_session(app_id, secret)
    answer = _until(lambda: fresh.get(f"{stack.gateway_url}/api/alerts", timeout=10), 200)
    assert answer.status_code == 200


def test_deleted_app_is_refused_with_its_existing_token(
    stack: Stack, admin: OAuth2Session, create_app: AppFactory, oauth_session: SessionFactory
) -> None:
    app_id, secret = create_app(["Alert.Read.All"])
    partner = oauth_session(app_id, secret)

    def alerts() -> requests.Response:
        response: requests.Response = partner.get(f"{stack.gateway_url}/api/alerts", timeout=10)
        return response

    assert alerts().status_code == 200
    assert admin.delete(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10).status_code == 204

    refused = _until(alerts, 401)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert _token_answer(stack, app_id, secret).status_code == 401
    assert admin.get(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10).status_code == 404
