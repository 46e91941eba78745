"""One table says what each service reads (capps_stack.environment); every deployment agrees.

The local stack derives each service's environment from that table; here docker-compose.yml,
the Kubernetes manifests and the services' settings classes are held to it: each service is
given every connection and secret it reads, and no secret or store it does not.
"""

from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from capps_aggregator.settings import AggregatorSettings
from capps_gateway.settings import GatewaySettings
from capps_registry.settings import RegistrySettings
from capps_stack import config, environment
from tests.deploy.compose_check import REPO, filled_env, load_compose
from tests.deploy.manifests import render_example_overlay

SETTINGS: dict[str, type[BaseSettings]] = {
    "registry": RegistrySettings,
    "gateway": GatewaySettings,
    "aggregator": AggregatorSettings,
}
# The table's names for the services, as compose and Kubernetes call them.
DEPLOYED_AS = {"registry": "registry", "gateway": "gateway", "aggregator": "usage-aggregator"}
GUARDED = {
    name
    for service in environment.CONNECTIONS
    for name in environment.CONNECTIONS[service] + environment.SECRETS[service]
} - {"TOKEN_AUDIENCE", "TOKEN_ISSUER", "KAFKA_BOOTSTRAP_SERVERS", "REGISTRY_URL"}


def needed(service: str) -> set[str]:
    """Connections and secrets a deployment must give the service."""
    return set(environment.CONNECTIONS[service] + environment.SECRETS[service])


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_variable_is_a_setting_of_the_service(service: str) -> None:
    fields = set(SETTINGS[service].model_fields)
    for name in environment.variables(service) + environment.MIGRATIONS[service]:
        assert name.lower() in fields, f"{service} has no setting for {name}"


def test_the_demo_api_reads_its_variables() -> None:
    source = (REPO / "deploy/demo-api/src/capps_demo_api/__main__.py").read_text()
    for name in environment.variables("demo-api"):
        assert f'"{name}"' in source


@pytest.fixture(scope="module")
def compose_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env_file = filled_env(tmp_path_factory.mktemp("env"))
    loaded = load_compose(REPO / "docker-compose.yml", env={}, env_files=(env_file,))
    assert loaded.returncode == 0, loaded.error
    services: dict[str, Any] = loaded.project["services"]
    return services


@pytest.mark.parametrize("service", sorted(DEPLOYED_AS))
def test_compose_gives_each_service_what_it_reads_and_no_more(
    service: str, compose_services: dict[str, Any]
) -> None:
    given = set(compose_services[DEPLOYED_AS[service]]["environment"])
    assert sorted(needed(service) - given) == []
    assert sorted((given & GUARDED) - needed(service)) == []


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    objects = render_example_overlay(tmp_path_factory.mktemp("k8s"))
    found = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    found["capps-config"] = next(
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("capps-config")
    )
    return found


@pytest.mark.parametrize("service", sorted(DEPLOYED_AS))
def test_kubernetes_gives_each_service_what_it_reads_and_no_more(
    service: str, deployments: dict[str, Any]
) -> None:
    config = set(deployments["capps-config"]["data"])
    pod = deployments[DEPLOYED_AS[service]]["spec"]["template"]["spec"]
    main = pod["containers"][0]
    given = config | {env["name"] for env in main.get("env", [])}
    assert sorted(needed(service) - given) == []
    from_secrets = {
        env["name"] for env in main.get("env", []) if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert sorted(from_secrets - needed(service)) == []
    # Init containers (migrations) may read what migrations read, and nothing else secret.
    migrating = {
        env["name"]
        for container in pod.get("initContainers", [])
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert sorted(migrating - needed(service) - set(environment.MIGRATIONS[service])) == []


def test_the_table_is_what_the_local_stack_gives(tmp_path: Path) -> None:
    secrets = dict.fromkeys(("REGISTRY_KEY_ENCRYPTION_KEY", "REGISTRY_SECRET_PEPPER"), "s" * 43)
    secrets |= {config.kafka_password_variable(name): "k" * 43 for name in config.KAFKA_PRINCIPALS}
    ports = config.Ports()
    for service in environment.CONNECTIONS:
        env = environment.service_environment(service, ports, tmp_path, REPO, secrets)
        assert set(env) == set(environment.variables(service)) | set(environment.COMMON)
