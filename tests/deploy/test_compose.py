"""docker-compose.yml as `docker compose up` sees it: loadable, healthy in order, closed by default.

The file is loaded by compose-go (deploy/compose-check), so anything `docker compose` would
refuse — an undeclared volume, a missing required secret — fails here too.
"""

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.compose_check import (
    COMPOSE,
    ENV_EXAMPLE,
    REPO,
    REQUIRED_SECRETS,
    Loaded,
    filled_env,
    load_compose,
)

DOCKERFILE = REPO / "deploy" / "docker" / "service.Dockerfile"
# The doors partner apps and admins use; every other port stays on loopback.
PUBLIC_PORTS = {("gateway", 8000), ("registry", 8080)}
ONE_SHOT_JOBS = {
    "topics",
    "kafka-security",
    "registry-migrate",
    "aggregator-migrate",
    "grafana-db-access",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The resolved project, loaded with a filled-in .env and nothing from this shell."""
    loaded = load_compose(COMPOSE, env={}, env_files=(filled_env(tmp_path_factory.mktemp("env")),))
    assert loaded.returncode == 0, f"compose-go refused docker-compose.yml:\n{loaded.error}"
    return loaded.project


def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services by name."""
    found: dict[str, dict[str, Any]] = project["services"]
    return found


def long_running(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that stay up (one-shot jobs run with restart "no" and exit)."""
    return {name: svc for name, svc in services(project).items() if svc.get("restart") != "no"}


def test_an_undeclared_volume_is_refused_like_docker_compose_does(tmp_path: Path) -> None:
    # The defect this file once had: the gateway mounted gateway-spool, never declared.
    text = COMPOSE.read_text()
    broken = re.sub(r"^  gateway-spool:\n", "", text, flags=re.M)
    assert broken != text
    (tmp_path / "docker-compose.yml").write_text(broken)
    loaded = load_compose(
        tmp_path / "docker-compose.yml", env={}, env_files=(filled_env(tmp_path),)
    )
    assert loaded.returncode != 0
    assert "undefined volume gateway-spool" in loaded.error


def test_a_missing_secret_stops_compose_with_its_name(tmp_path: Path) -> None:
    env_file = filled_env(tmp_path)
    text = re.sub(r"^REDIS_PASSWORD=.*$", "REDIS_PASSWORD=", env_file.read_text(), flags=re.M)
    env_file.write_text(text)
    loaded = load_compose(COMPOSE, env={}, env_files=(env_file,))
    assert loaded.returncode != 0
    assert "set REDIS_PASSWORD in .env" in loaded.error


def test_the_example_env_alone_is_refused_until_secrets_are_filled_in() -> None:
    loaded = load_compose(COMPOSE, env={}, env_files=(ENV_EXAMPLE,))
    assert loaded.returncode != 0
    for name in REQUIRED_SECRETS:
        assert f"set {name} in .env" in loaded.error


def test_every_variable_the_file_reads_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert used, "no variables found: the pattern is wrong"
    assert sorted(used - documented) == []


def test_every_long_running_service_has_a_health_check(project: dict[str, Any]) -> None:
    running = long_running(project)
    assert {"kafka", "postgres", "redis", "registry", "gateway", "usage-aggregator"} <= set(running)
    for name, svc in running.items():
        check = svc.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name} disables its health check"


def test_dependencies_wait_for_health_or_completion(project: dict[str, Any]) -> None:
    running = long_running(project)
    for name, svc in services(project).items():
        for dependency, spec in (svc.get("depends_on") or {}).items():
            expected = (
                "service_completed_successfully"
                if dependency in ONE_SHOT_JOBS
                else "service_healthy"
            )
            assert spec["condition"] == expected, f"{name} -> {dependency}"
            assert dependency in running or dependency in ONE_SHOT_JOBS


def test_migrations_and_topics_are_one_shot_jobs(project: dict[str, Any]) -> None:
    all_services = services(project)
    for job in ONE_SHOT_JOBS:
        assert all_services[job]["restart"] == "no", job
    assert all_services["registry"]["command"] == ["registry", "serve"]
    assert all_services["usage-aggregator"]["command"][-1] == "worker"
    assert "migrate" not in " ".join(all_services["registry"]["command"])


def test_no_infrastructure_port_is_published_beyond_loopback(project: dict[str, Any]) -> None:
    published = 0
    for name, svc in services(project).items():
        for port in svc.get("ports") or []:
            published += 1
            if (name, port["target"]) in PUBLIC_PORTS:
                continue
            assert port.get("host_ip") == "127.0.0.1", f"{name}:{port['target']} is public"
    assert published > len(PUBLIC_PORTS)


def test_production_is_the_default_environment(project: dict[str, Any]) -> None:
    for name, svc in services(project).items():
        env = svc.get("environment") or {}
        if "ENVIRONMENT" in env:
            assert env["ENVIRONMENT"] == "production", name
    assert services(project)["registry"]["environment"]["ENVIRONMENT"] == "production"


def test_state_lives_on_named_volumes(project: dict[str, Any]) -> None:
    declared = set(project.get("volumes") or {})
    for name in ("kafka", "postgres", "redis", "prometheus", "grafana", "gateway"):
        mounts = services(project)[name].get("volumes") or []
        named = [m["source"] for m in mounts if m["type"] == "volume"]
        assert named, f"{name} keeps its state in the container"
        assert set(named) <= declared


def test_the_gateway_gets_no_database_credentials(project: dict[str, Any]) -> None:
    env = services(project)["gateway"]["environment"]
    assert "DATABASE_URL" not in env
    assert "REGISTRY_KEY_ENCRYPTION_KEY" not in env
    assert env["REDIS_URL"].endswith("@redis:6379/0")  # rate limits are shared through Redis


def test_no_secret_is_baked_into_an_image() -> None:
    recipe = DOCKERFILE.read_text()
    for line in recipe.splitlines():
        if re.match(r"\s*(ENV|ARG)\b", line):
            assert not re.search(r"PASSWORD|SECRET|_KEY\b|TOKEN", line, flags=re.I), line
    ignored = (REPO / ".dockerignore").read_text().split()
    for must in (".env", ".local/", ".git/"):
        assert must in ignored, f"{must} would reach the image build context"


def test_the_loader_tells_a_broken_file_from_a_good_one(tmp_path: Path) -> None:
    # The loader itself is part of the test: a plain syntax error must fail it too.
    (tmp_path / "docker-compose.yml").write_text("services:\n  a: [unclosed\n")
    loaded: Loaded = load_compose(tmp_path / "docker-compose.yml", env={})
    assert loaded.returncode != 0


def test_each_service_logs_in_to_kafka_as_itself(project: dict[str, Any]) -> None:
    found = services(project)
    logins = {
        name: found[name]["environment"] for name in ("registry", "gateway", "usage-aggregator")
    }
    assert {name: env["KAFKA_SASL_USERNAME"] for name, env in logins.items()} == {
        "registry": "registry",
        "gateway": "gateway",
        "usage-aggregator": "aggregator",
    }
    assert {env["KAFKA_SECURITY_PROTOCOL"] for env in logins.values()} == {"SASL_PLAINTEXT"}
    # Each its own password (the filled-in .env gives every secret a different value).
    assert len({env["KAFKA_SASL_PASSWORD"] for env in logins.values()}) == 3
    job = found["kafka-security"]["environment"]
    assert {env["KAFKA_SASL_PASSWORD"] for env in logins.values()} == {
        job["KAFKA_REGISTRY_PASSWORD"],
        job["KAFKA_GATEWAY_PASSWORD"],
        job["KAFKA_AGGREGATOR_PASSWORD"],
    }


def test_kafka_takes_only_sasl_and_denies_without_an_acl() -> None:
    broker = (REPO / "deploy" / "kafka" / "compose-broker.sh").read_text()
    protocols = re.search(r"^listener\.security\.protocol\.map=(.*)$", broker, re.M)
    assert protocols is not None
    assert {pair.split(":")[1] for pair in protocols.group(1).split(",")} == {"SASL_PLAINTEXT"}
    for line in (
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "super.users=User:admin",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
    ):
        assert f"\n{line}\n" in broker


def test_the_registry_serves_as_its_own_role_which_its_migration_sets_up(
    project: dict[str, Any],
) -> None:
    """Row-level security binds the registry only if it never connects as the owner."""
    owner = urlsplit(services(project)["registry-migrate"]["environment"]["DATABASE_URL"])
    served = urlsplit(services(project)["registry"]["environment"]["DATABASE_URL"])
    made = urlsplit(
        services(project)["registry-migrate"]["environment"]["REGISTRY_APP_DATABASE_URL"]
    )
    assert owner.username == services(project)["postgres"]["environment"]["POSTGRES_USER"]
    assert served.username != owner.username
    assert (made.username, made.password) == (served.username, served.password)
    assert served.password != owner.password
    # Only the migration job holds the owner's password.
    assert "REGISTRY_APP_DATABASE_URL" not in services(project)["registry"]["environment"]
