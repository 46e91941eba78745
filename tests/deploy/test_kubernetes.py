"""deploy/k8s rendered by the kustomize library and validated against the Kubernetes schemas.

No cluster is needed: `kustomize-build` (deploy/kustomize-build) renders the base and the
example overlay as `kubectl apply -k` would, and kubernetes-validate checks every object
against the OpenAPI schemas of the Kubernetes release below (strict: unknown fields fail).
ServiceMonitor (a Prometheus Operator CRD) is checked against the part of its schema we use.
"""

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from capps_events import REQUESTS_TOPIC, TOPICS
from tests.deploy.go_tools import REPO
from tests.deploy.manifests import K8S, Objects, kustomize_build, render_example_overlay

KUBERNETES_VERSION = "1.33"
SERVICES = ("registry", "gateway", "usage-aggregator")
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object"}},
                    "additionalProperties": False,
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    """The example overlay, rendered with its secrets.env filled in as a user would."""
    return render_example_overlay(tmp_path_factory.mktemp("k8s"))


@pytest.fixture(scope="module")
def base() -> Objects:
    """The base alone."""
    return kustomize_build(K8S / "base")


def of_kind(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind by name."""
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def named(objects: dict[str, dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The one object named `prefix`, or `prefix` plus the content hash a generator appends."""
    (found,) = [obj for name, obj in objects.items() if prefix in (name, name.rsplit("-", 1)[0])]
    return found


def pod_containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """Init and main containers of a Deployment's pod template."""
    spec = deployment["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = spec.get("initContainers", []) + spec["containers"]
    return containers


def test_every_object_is_valid_against_the_kubernetes_schemas(
    base: Objects, overlay: Objects
) -> None:
    kinds = set()
    for obj in [*base, *overlay]:
        kinds.add(obj["kind"])
        if obj["kind"] == "ServiceMonitor":
            jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    expected = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    assert expected | {"ConfigMap", "ServiceMonitor", "Secret", "Ingress"} <= kinds


def test_the_validation_catches_a_wrong_field(base: Objects) -> None:
    deployment = of_kind(base, "Deployment")["gateway"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_service_has_probes_resources_and_runs_unprivileged(overlay: Objects) -> None:
    deployments = of_kind(overlay, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        for container in pod_containers(deployment):
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), (name, container["name"])
            assert container["resources"]["limits"]["memory"], (name, container["name"])
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert container["image"].startswith("registry.example.com/"), container["image"]


def test_disruption_budgets_and_autoscalers(overlay: Objects) -> None:
    deployments = of_kind(overlay, "Deployment")
    budgets = of_kind(overlay, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
    scalers = of_kind(overlay, "HorizontalPodAutoscaler")
    assert set(scalers) == {"gateway", "usage-aggregator"}
    for name, scaler in scalers.items():
        assert scaler["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }


def test_the_aggregator_never_scales_past_the_partition_count(overlay: Objects) -> None:
    partitions = next(spec.partitions for spec in TOPICS if spec.name == REQUESTS_TOPIC)
    scaler = of_kind(overlay, "HorizontalPodAutoscaler")["usage-aggregator"]
    assert scaler["spec"]["maxReplicas"] == partitions


def test_every_service_is_scraped_by_a_service_monitor(overlay: Objects) -> None:
    services = of_kind(overlay, "Service")
    monitors = of_kind(overlay, "ServiceMonitor")
    assert set(services) == set(monitors) == set(SERVICES)
    for name, monitor in monitors.items():
        port_names = {port["name"] for port in services[name]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names, name
            assert endpoint["path"] == "/metrics"
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= services[name]["metadata"]["labels"].items()


def test_kafka_postgres_and_redis_are_external_and_secrets_come_from_the_overlay(
    base: Objects, overlay: Objects
) -> None:
    assert not of_kind(base, "Secret"), "the base must not carry secrets"
    assert not of_kind(overlay, "StatefulSet")
    config = named(of_kind(overlay, "ConfigMap"), "capps-config")["data"]
    assert config["ENVIRONMENT"] == "production"
    assert "," in config["KAFKA_BOOTSTRAP_SERVERS"]
    secret = named(of_kind(overlay, "Secret"), "capps-secrets")
    assert set(secret["data"]) == {
        "DATABASE_URL",
        "REGISTRY_DATABASE_URL",
        "REDIS_URL",
        "REGISTRY_KEY_ENCRYPTION_KEY",
        "REGISTRY_SECRET_PEPPER",
    }
    assert "secrets.env" in (REPO / ".gitignore").read_text()
    gateway = of_kind(overlay, "Deployment")["gateway"]
    gateway_env = {env["name"] for c in pod_containers(gateway) for env in c.get("env", [])}
    assert not gateway_env & {
        "DATABASE_URL",
        "REGISTRY_KEY_ENCRYPTION_KEY",
        "REGISTRY_SECRET_PEPPER",
    }


def test_admin_ports_are_closed_to_everyone_but_the_scrapers(overlay: Objects) -> None:
    policies = of_kind(overlay, "NetworkPolicy")
    deployments = of_kind(overlay, "Deployment")
    assert set(policies) == set(deployments)
    for name, policy in policies.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        for rule in policy["spec"]["ingress"]:
            ports = {port["port"] for port in rule["ports"]}
            if "admin" in ports:
                assert rule["from"] == [
                    {"namespaceSelector": {"matchLabels": {"capps.io/scrape": "true"}}}
                ], name
            else:
                assert ports <= {"proxy", "http"}, name


def test_each_service_logs_in_to_kafka_with_its_own_secret(overlay: Objects) -> None:
    secrets = of_kind(overlay, "Secret")
    for name, principal in (
        ("registry", "registry"),
        ("gateway", "gateway"),
        ("usage-aggregator", "aggregator"),
    ):
        pod = of_kind(overlay, "Deployment")[name]["spec"]["template"]["spec"]
        env = {
            e["name"]: e
            for c in pod.get("initContainers", []) + pod["containers"]
            for e in c.get("env", [])
        }
        assert env["KAFKA_SASL_USERNAME"]["value"] == principal
        secret = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        assert secret in secrets
        assert secret.rsplit("-", 1)[0] == f"capps-kafka-{principal}"
        # No pod of a service holds the admin's password or another service's.
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in env.values()
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert {ref.rsplit("-", 1)[0] for ref in refs} <= {
            "capps-secrets",
            f"capps-kafka-{principal}",
        }
    config = named(of_kind(overlay, "ConfigMap"), "capps-config")["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"].startswith("SASL_")


def test_the_bus_setup_job_runs_the_shared_script_as_the_admin(overlay: Objects) -> None:
    job = of_kind(overlay, "Job")["kafka-bus-setup"]
    pod = job["spec"]["template"]["spec"]
    script = named(of_kind(overlay, "ConfigMap"), "capps-kafka-bus")["data"]["bus-security.sh"]
    assert script == (REPO / "deploy" / "kafka" / "bus-security.sh").read_text()
    (acls,) = pod["initContainers"]
    assert acls["command"] == ["sh", "/bus/bus-security.sh"]
    (topics,) = pod["containers"]
    assert topics["command"][:3] == ["python", "-m", "capps_kit.topics"]
    admin = {e["name"]: e for e in topics["env"]}
    assert admin["KAFKA_SASL_USERNAME"]["value"] == "admin"


def test_the_registry_serves_as_its_own_role_and_migrates_as_the_owner(overlay: Objects) -> None:
    """Row-level security binds the registry only if it never connects as the owner."""
    pod = of_kind(overlay, "Deployment")["registry"]["spec"]["template"]["spec"]

    def secret_keys(container: dict[str, Any]) -> dict[str, str]:
        return {
            env["name"]: env["valueFrom"]["secretKeyRef"]["key"]
            for env in container.get("env", [])
            if "secretKeyRef" in env.get("valueFrom", {})
        }

    serving = secret_keys(pod["containers"][0])
    migrating = secret_keys(next(c for c in pod["initContainers"] if c["name"] == "migrate"))
    assert serving["DATABASE_URL"] == "REGISTRY_DATABASE_URL"
    assert migrating["DATABASE_URL"] == "DATABASE_URL"
    assert migrating["REGISTRY_APP_DATABASE_URL"] == "REGISTRY_DATABASE_URL"
    assert "DATABASE_URL" not in serving.values()
