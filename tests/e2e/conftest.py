"""What end-to-end tests do as the stack's users: bootstrap a tenant, register apps, get tokens."""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from authlib.integrations.requests_client import OAuth2Session

from capps_stack.config import parse_env_file
from tests.infra import Stack

REGISTRY_CLI = Path(sys.executable).with_name("registry")
REPO = Path(__file__).resolve().parents[2]

SessionFactory = Callable[[str, str], OAuth2Session]
AppFactory = Callable[[list[str]], tuple[str, str]]


def _registry_environment() -> dict[str, str]:
    """This environment plus the local stack's registry secrets (its pepper digests secrets).

    The CLI must digest the admin client's secret with the pepper the running registry has;
    the stack keeps it in its state directory's secrets.env, never in stack.env.
    """
    local = Path(os.environ.get("CAPPS_LOCAL_DIR") or REPO / ".local")
    path = local / "secrets.env"
    stack_secrets = parse_env_file(path.read_text()) if path.exists() else {}
    return {**os.environ, **stack_secrets}


def _create_tenant() -> dict[str, str]:
    """The platform team's bootstrap: `registry tenant create --name NAME`."""
    done = subprocess.run(
        [str(REGISTRY_CLI), "tenant", "create", "--name", f"e2e-{uuid.uuid4().hex[:8]}"],
        capture_output=True,
        text=True,
        check=True,
        env=_registry_environment(),
        timeout=60,
    )
    tenant: dict[str, str] = json.loads(done.stdout)
    assert set(tenant) == {"tenant_id", "client_id", "client_secret"}
    return tenant


@pytest.fixture(scope="module")
def oauth_session(stack: Stack) -> SessionFactory:
    """A client-credentials session of a standard OAuth 2.0 library, holding a fresh token."""

    def open_session(client_id: str, client_secret: str) -> OAuth2Session:
        session = OAuth2Session(
            client_id, client_secret, token_endpoint_auth_method="client_secret_basic"
        )
        session.fetch_token(f"{stack.registry_url}/oauth2/token", grant_type="client_credentials")
        return session

    return open_session


@pytest.fixture(scope="module")
def admin(oauth_session: SessionFactory) -> OAuth2Session:
    """The admin client of a new tenant, holding its token."""
    tenant = _create_tenant()
    return oauth_session(tenant["client_id"], tenant["client_secret"])


@pytest.fixture(scope="module")
def create_app(stack: Stack, admin: OAuth2Session) -> AppFactory:
    """Register an app with these permissions as the tenant admin: (app id, client secret)."""

    def create(permissions: list[str]) -> tuple[str, str]:
        created = admin.post(
            f"{stack.registry_url}/v1/apps",
            json={"name": "SIEM connector", "permissions": permissions},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        body = created.json()
        return body["id"], body["client_secret"]

    return create
