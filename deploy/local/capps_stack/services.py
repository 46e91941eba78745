"""Our Python services, run from the venv with the environment environment.py derives for each."""

from __future__ import annotations

from dataclasses import dataclass

from .config import HOST, StackError, urls
from .environment import migration_environment, service_environment
from .part import Context, Part
from .process import http_ok, say


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How one of our services runs: one-shot preparations, the server command, its health URL.

    Commands name a script of the venv's bin directory first (`python`, `registry`).
    """

    name: str
    port_attr: str
    health_path: str
    serve: tuple[str, ...]
    prepare: tuple[tuple[str, ...], ...] = ()


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("demo-api", "demo_api", "/healthz", ("python", "-m", "capps_demo_api")),
    ServiceSpec(
        "registry", "registry", "/readyz", ("registry", "serve"), prepare=(("registry", "migrate"),)
    ),
    ServiceSpec(
        "aggregator",
        "aggregator",
        "/readyz",
        ("python", "-m", "capps_aggregator", "worker"),
        prepare=(("python", "-m", "capps_aggregator", "migrate"),),
    ),
    ServiceSpec("gateway", "gateway_admin", "/readyz", ("python", "-m", "capps_gateway")),
)


class Service(Part):
    """One of our Python services, run from the venv with the stack's environment."""

    stop_timeout = 20.0

    def __init__(self, ctx: Context, spec: ServiceSpec) -> None:
        super().__init__(ctx)
        self.spec = spec

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.spec.name

    @property
    def port(self) -> int:
        port: int = getattr(self.ctx.ports, self.spec.port_attr)
        return port

    @property
    def health_url(self) -> str:
        """The URL `up` waits on."""
        return f"http://{HOST}:{self.port}{self.spec.health_path}"

    @property
    def address(self) -> str:
        if self.spec.name == "gateway":
            return urls(self.ctx.ports)["GATEWAY_URL"]
        return f"http://{HOST}:{self.port}"

    def what(self) -> str:
        return self.health_url

    def healthy(self) -> bool:
        return http_ok(self.health_url)

    def argv(self, command: tuple[str, ...]) -> list[str]:
        """A command with its first word resolved in the venv."""
        binary = self.ctx.venv_bin / command[0]
        if not binary.exists():
            raise StackError(f"{binary} is missing: run `uv sync` (make up does)")
        return [str(binary), *command[1:]]

    def secrets(self) -> dict[str, str]:
        """The stack's generated secrets and Kafka passwords (each service takes its own)."""
        return {**self.ctx.secrets(), **self.ctx.kafka_passwords()}

    def environment(self) -> dict[str, str]:
        """The caller's environment plus the stack's addresses and secrets."""
        extra = service_environment(
            self.spec.name, self.ctx.ports, self.ctx.local, self.ctx.repo, self.secrets()
        )
        return {**self.ctx.base_env, **extra}

    def launch(self) -> None:
        env = self.environment()
        migrating = {
            **self.ctx.base_env,
            **migration_environment(
                self.spec.name, self.ctx.ports, self.ctx.local, self.ctx.repo, self.secrets()
            ),
        }
        (self.ctx.local / "aggregator").mkdir(parents=True, exist_ok=True)
        for command in self.spec.prepare:
            say(f"  {self.name}: {' '.join(command)}")
            self.run_logged(self.argv(command), env=migrating, what=" ".join(command))
        self.spawn(self.argv(self.spec.serve), env=env)
