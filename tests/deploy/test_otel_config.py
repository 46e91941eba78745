"""The compose file's collector configurations are ones a real collector accepts."""

import pytest

from tests.deploy.go_tools import REPO
from tests.integration.tracing.collector import validate_config

OTEL = REPO / "deploy" / "otel"
# The first run may build the collector from scratch (modules downloaded, then compiled).
pytestmark = pytest.mark.timeout(1800)


@pytest.mark.parametrize("name", ["collector.yaml", "collector-forward.yaml"])
def test_the_collector_accepts_the_configuration(name: str) -> None:
    done = validate_config(OTEL / name, {"OTEL_FORWARD_ENDPOINT": "http://tempo.example:4318"})
    assert done.returncode == 0, done.stderr


def test_forwarding_without_an_endpoint_is_refused_with_a_reason() -> None:
    done = validate_config(OTEL / "collector-forward.yaml", {})
    assert done.returncode != 0
    assert "endpoint" in done.stderr
