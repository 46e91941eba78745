"""The one place that says which settings each service reads, and their local-stack values.

The local stack gives each service exactly its variables; tests check docker-compose.yml and
the Kubernetes manifests against the same table (each service gets the connections and
secrets it reads, and no other service's secrets) and every variable against the service's
settings class, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .config import (
    API_AUDIENCE,
    HOST,
    KAFKA_PRINCIPALS,
    Ports,
    kafka_client_env,
    kafka_password_variable,
    urls,
)

# How a service authenticates to Kafka: as its own principal (its name), with its own password.
KAFKA_AUTH = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME")

# Where a service finds the others and its stores: deployment-specific, set by every deployment.
CONNECTIONS: dict[str, tuple[str, ...]] = {
    "demo-api": (),
    "registry": (
        "DATABASE_URL",
        "REDIS_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        *KAFKA_AUTH,
        "TOKEN_ISSUER",
        "TOKEN_AUDIENCE",
    ),
    "aggregator": ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", *KAFKA_AUTH),
    "gateway": (
        "REDIS_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        *KAFKA_AUTH,
        "REGISTRY_URL",
        "TOKEN_ISSUER",
        "TOKEN_AUDIENCE",
        "GATEWAY_UPSTREAM_URL",
    ),
}
# Secrets a service holds; no other service may be given them.
SECRETS: dict[str, tuple[str, ...]] = {
    "demo-api": (),
    "registry": ("REGISTRY_KEY_ENCRYPTION_KEY", "REGISTRY_SECRET_PEPPER", "KAFKA_SASL_PASSWORD"),
    "aggregator": ("KAFKA_SASL_PASSWORD",),
    "gateway": ("KAFKA_SASL_PASSWORD",),
}
# What a service's migrations read besides its own variables: they run as the owner
# (DATABASE_URL), and set up the login role the service itself connects as.
MIGRATIONS: dict[str, tuple[str, ...]] = {
    "demo-api": (),
    "registry": ("REGISTRY_APP_DATABASE_URL",),
    "aggregator": (),
    "gateway": (),
}
# Where a service listens and keeps local files: containers keep the defaults or set their own.
PLACES: dict[str, tuple[str, ...]] = {
    "demo-api": ("DEMO_API_HOST", "DEMO_API_PORT"),
    "registry": ("REGISTRY_HOST", "REGISTRY_PORT", "CATALOG_PATH"),
    "aggregator": ("AGGREGATOR_HOST", "AGGREGATOR_PORT", "AGGREGATOR_DATA_DIR"),
    "gateway": (
        "GATEWAY_HOST",
        "GATEWAY_PORT",
        "GATEWAY_ADMIN_PORT",
        "GATEWAY_SPOOL_DIR",
        "CATALOG_PATH",
    ),
}
# Every service of the local stack: development mode, and unbuffered output so `make logs`
# and the crash tails in error messages are complete.
COMMON = {"ENVIRONMENT": "development", "PYTHONUNBUFFERED": "1"}


def variables(service: str) -> tuple[str, ...]:
    """Every variable the stack sets for one service."""
    return CONNECTIONS[service] + SECRETS[service] + PLACES[service]


def stack_values(
    ports: Ports, local_dir: Path, repo: Path, secrets: Mapping[str, str]
) -> dict[str, str]:
    """The local stack's value of every variable of the table."""
    found = urls(ports)
    return {
        "DATABASE_URL": found["DATABASE_URL"],
        "REGISTRY_APP_DATABASE_URL": found["REGISTRY_DATABASE_URL"],
        "REDIS_URL": found["REDIS_URL"],
        "KAFKA_BOOTSTRAP_SERVERS": found["KAFKA_BOOTSTRAP_SERVERS"],
        "REGISTRY_URL": found["REGISTRY_URL"],
        "TOKEN_ISSUER": found["REGISTRY_URL"],
        "TOKEN_AUDIENCE": API_AUDIENCE,
        "GATEWAY_UPSTREAM_URL": found["DEMO_API_URL"],
        "CATALOG_PATH": str(repo / "config" / "catalog.yaml"),
        "DEMO_API_HOST": HOST,
        "DEMO_API_PORT": str(ports.demo_api),
        "REGISTRY_HOST": HOST,
        "REGISTRY_PORT": str(ports.registry),
        "AGGREGATOR_HOST": HOST,
        "AGGREGATOR_PORT": str(ports.aggregator),
        "AGGREGATOR_DATA_DIR": str(local_dir / "aggregator"),
        "GATEWAY_HOST": HOST,
        "GATEWAY_PORT": str(ports.gateway),
        "GATEWAY_ADMIN_PORT": str(ports.gateway_admin),
        # Request events wait here while Kafka is down; kept across restarts, never wiped.
        "GATEWAY_SPOOL_DIR": str(local_dir / "gateway" / "spool"),
        **secrets,
    }


def service_environment(
    service: str, ports: Ports, local_dir: Path, repo: Path, secrets: Mapping[str, str]
) -> dict[str, str]:
    """What one service process gets on top of the caller's environment.

    A secret the stack has not generated (an older state directory) is left out, so the
    service keeps its development default rather than a new value that would not match.
    `secrets` also holds the Kafka passwords by principal (KAFKA_GATEWAY_PASSWORD...); each
    service gets only its own, as KAFKA_SASL_PASSWORD.
    """
    values = stack_values(ports, local_dir, repo, secrets)
    if service in KAFKA_PRINCIPALS:
        values |= kafka_client_env(service, secrets.get(kafka_password_variable(service), ""))
        if not values["KAFKA_SASL_PASSWORD"]:
            del values["KAFKA_SASL_PASSWORD"]
    own = {name: values[name] for name in variables(service) if name in values}
    if service == "registry":
        # The registry serves as its own role, bound by row-level security, never the owner.
        own["DATABASE_URL"] = values["REGISTRY_APP_DATABASE_URL"]
    return {**own, **COMMON}


def migration_environment(
    service: str, ports: Ports, local_dir: Path, repo: Path, secrets: Mapping[str, str]
) -> dict[str, str]:
    """What a service's one-shot migrations get: the owner's DATABASE_URL and MIGRATIONS."""
    values = stack_values(ports, local_dir, repo, secrets)
    env = service_environment(service, ports, local_dir, repo, secrets)
    if "DATABASE_URL" in env:
        env["DATABASE_URL"] = values["DATABASE_URL"]
    return {**env, **{name: values[name] for name in MIGRATIONS[service]}}
