"""Where the stack lives and which ports it uses: pure configuration, unit-tested."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

REPO = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
# Standard library only, so its own copy; tests/test_local_stack.py checks it equals
# capps_kit.settings.API_AUDIENCE.
API_AUDIENCE = "capps-api"
# The event bus requires SASL/SCRAM: the admin principal (the broker itself, topic creation,
# the tests) is the only super user; each service has its own principal, held to its ACLs
# (deploy/kafka/bus-security.sh). Passwords are generated per stack (Context.kafka_passwords).
KAFKA_SECURITY_PROTOCOL: Final = "SASL_PLAINTEXT"
KAFKA_SASL_MECHANISM: Final = "SCRAM-SHA-512"
KAFKA_ADMIN = "admin"
KAFKA_PRINCIPALS = ("registry", "gateway", "aggregator")


def kafka_password_variable(principal: str) -> str:
    """The variable holding a principal's password: KAFKA_GATEWAY_PASSWORD, as compose names it."""
    return f"KAFKA_{principal.upper()}_PASSWORD"


def kafka_client_env(username: str, password: str) -> dict[str, str]:
    """The settings (capps_kit.settings.KafkaSettings) of a client authenticating as `username`."""
    return {
        "KAFKA_SECURITY_PROTOCOL": KAFKA_SECURITY_PROTOCOL,
        "KAFKA_SASL_MECHANISM": KAFKA_SASL_MECHANISM,
        "KAFKA_SASL_USERNAME": username,
        "KAFKA_SASL_PASSWORD": password,
    }


class StackError(Exception):
    """A part could not be started or did not get healthy; the message says where to look."""


@dataclass(frozen=True, slots=True)
class Ports:
    """Every port the stack uses, each overridable by one environment variable."""

    kafka: int = 9092
    kafka_controller: int = 9093
    postgres: int = 5432
    redis: int = 6379
    prometheus: int = 9090
    demo_api: int = 8090
    registry: int = 8080
    aggregator: int = 6066
    gateway: int = 8000
    gateway_admin: int = 8001

    ENV: ClassVar[dict[str, str]] = {
        "kafka": "CAPPS_KAFKA_PORT",
        "kafka_controller": "CAPPS_KAFKA_CONTROLLER_PORT",
        "postgres": "CAPPS_POSTGRES_PORT",
        "redis": "CAPPS_REDIS_PORT",
        "prometheus": "CAPPS_PROMETHEUS_PORT",
        "demo_api": "DEMO_API_PORT",
        "registry": "REGISTRY_PORT",
        "aggregator": "AGGREGATOR_PORT",
        "gateway": "GATEWAY_PORT",
        "gateway_admin": "GATEWAY_ADMIN_PORT",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        """Read the overrides; a value that is not a port is refused with its variable's name."""
        values: dict[str, int] = {}
        for attr, var in cls.ENV.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise StackError(f"{var}={raw!r} is not a TCP port (1-65535)")
            values[attr] = int(raw)
        ports = cls(**values)
        numbers = [getattr(ports, attr) for attr in cls.ENV]
        if len(set(numbers)) != len(numbers):
            raise StackError(
                f"two parts share a port: {dict(zip(cls.ENV.values(), numbers, strict=True))}"
            )
        return ports


def urls(ports: Ports) -> dict[str, str]:
    """The addresses clients use, as written to stack.env (shell-sourceable)."""
    return {
        "DATABASE_URL": f"postgresql://capps:capps@{HOST}:{ports.postgres}/capps",
        # The registry's own login role, bound by row-level security (registry migrate makes it).
        "REGISTRY_DATABASE_URL": (
            f"postgresql://capps_registry:capps_registry@{HOST}:{ports.postgres}/capps"
        ),
        "REDIS_URL": f"redis://{HOST}:{ports.redis}/0",
        "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{ports.kafka}",
        "REGISTRY_URL": f"http://{HOST}:{ports.registry}",
        "GATEWAY_URL": f"http://{HOST}:{ports.gateway}",
        "GATEWAY_ADMIN_URL": f"http://{HOST}:{ports.gateway_admin}",
        "AGGREGATOR_URL": f"http://{HOST}:{ports.aggregator}",
        "DEMO_API_URL": f"http://{HOST}:{ports.demo_api}",
        "PROMETHEUS_URL": f"http://{HOST}:{ports.prometheus}",
    }


def env_file_text(values: Mapping[str, str]) -> str:
    """KEY=value lines a shell can source (`set -a; . file; set +a`)."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def parse_env_file(text: str) -> dict[str, str]:
    """Read back what env_file_text wrote."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        parts = shlex.split(raw)
        values[key.strip()] = parts[0] if parts else ""
    return values
