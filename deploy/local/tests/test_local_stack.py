"""Unit tests of deploy/local/stack.py: configuration, generated files, pidfile lifecycle."""

import importlib.util
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

STACK_PY = Path(__file__).resolve().parents[1] / "stack.py"
REPO = Path(__file__).resolve().parents[3]


def _load_stack() -> ModuleType:
    # stack.py is a script, not a package: load it by path under a unique module name.
    spec = importlib.util.spec_from_file_location("capps_local_stack", STACK_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stack = _load_stack()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_ports_default_to_the_design_addresses() -> None:
    ports = stack.Ports.from_env({})
    assert (ports.kafka, ports.postgres, ports.redis, ports.prometheus) == (9092, 5432, 6379, 9090)
    assert (ports.gateway, ports.gateway_admin, ports.registry) == (8000, 8001, 8080)
    assert (ports.aggregator, ports.demo_api) == (6066, 8090)


def test_ports_follow_their_variables() -> None:
    ports = stack.Ports.from_env({"CAPPS_KAFKA_PORT": "59092", "GATEWAY_ADMIN_PORT": "58001"})
    assert ports.kafka == 59092
    assert ports.gateway_admin == 58001
    assert ports.registry == 8080


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1"])
def test_a_bad_port_names_its_variable(value: str) -> None:
    with pytest.raises(stack.StackError, match="CAPPS_REDIS_PORT"):
        stack.Ports.from_env({"CAPPS_REDIS_PORT": value})


def test_two_parts_on_one_port_are_refused() -> None:
    with pytest.raises(stack.StackError, match="share a port"):
        stack.Ports.from_env({"REGISTRY_PORT": "8000"})


def test_stack_env_round_trips_and_is_shell_safe() -> None:
    values = stack.urls(stack.Ports.from_env({"CAPPS_POSTGRES_PORT": "55432"}))
    text = stack.env_file_text({**values, "ODD": "a b'c"})
    assert "DATABASE_URL=postgresql://capps:capps@127.0.0.1:55432/capps\n" in text
    assert stack.parse_env_file(text) == {**values, "ODD": "a b'c"}
    for key in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "REGISTRY_URL", "GATEWAY_URL"):
        assert key in values


def test_services_get_the_agreed_environment(tmp_path: Path) -> None:
    ports = stack.Ports.from_env({"REGISTRY_PORT": "58080"})
    env = stack.service_environment(ports, tmp_path, REPO, "k" * 43)
    assert env["TOKEN_ISSUER"] == env["REGISTRY_URL"] == "http://127.0.0.1:58080"
    assert env["TOKEN_AUDIENCE"] == "capps-api"
    assert env["GATEWAY_UPSTREAM_URL"] == "http://127.0.0.1:8090"
    assert env["CATALOG_PATH"] == str(REPO / "config" / "catalog.yaml")
    assert env["AGGREGATOR_DATA_DIR"] == str(tmp_path / "aggregator")
    assert env["ENVIRONMENT"] == "development"
    assert env["REGISTRY_PORT"] == "58080"
    assert env["GATEWAY_ADMIN_PORT"] == "8001"


def test_kafka_properties_use_the_ports(tmp_path: Path) -> None:
    ports = stack.Ports.from_env({"CAPPS_KAFKA_PORT": "59092", "CAPPS_KAFKA_CONTROLLER_PORT": "9"})
    text = stack.kafka_server_properties(ports, tmp_path / "data")
    assert "controller.quorum.voters=1@127.0.0.1:9\n" in text
    assert "listeners=PLAINTEXT://127.0.0.1:59092,CONTROLLER://127.0.0.1:9\n" in text
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:59092\n" in text
    assert f"log.dirs={tmp_path / 'data'}\n" in text


def test_prometheus_config_follows_overridden_ports() -> None:
    template = (REPO / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert stack.prometheus_config(template, stack.Ports()) == template
    moved = stack.prometheus_config(
        template, stack.Ports.from_env({"GATEWAY_ADMIN_PORT": "58001", "REGISTRY_PORT": "58080"})
    )
    assert "'127.0.0.1:58001'" in moved
    assert "'127.0.0.1:58080'" in moved
    assert "'127.0.0.1:6066'" in moved


def test_kafka_cluster_id_has_kafkas_format() -> None:
    for _ in range(200):
        cluster_id = stack.new_kafka_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_start_time_survives_odd_command_names() -> None:
    fields = " ".join(["S", *[str(n) for n in range(4, 30)]])
    assert stack.start_time_from_stat(f"42 (a) b (c) {fields}") == "22"
    zombie = fields.replace("S", "Z", 1)
    assert stack.start_time_from_stat(f"42 (x) {zombie}") is None


def test_pidfile_parsing() -> None:
    assert stack.parse_pidfile("123 456\n") == (123, "456")
    assert stack.parse_pidfile("") is None
    assert stack.parse_pidfile("abc 1") is None


def test_postgres_versions_sort_numerically() -> None:
    assert sorted(["9.6", "15", "10"], key=stack.version_key) == ["9.6", "10", "15"]


def _context(tmp_path: Path) -> Any:
    return stack.make_context({"CAPPS_LOCAL_DIR": str(tmp_path / "state")})


def test_unknown_parts_are_refused(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    with pytest.raises(stack.StackError, match="unknown part"):
        stack.select(stack.all_parts(ctx), ["kafak"])
    names = [part.name for part in stack.all_parts(ctx)]
    assert names == [
        "kafka",
        "postgres",
        "redis",
        "prometheus",
        "demo-api",
        "registry",
        "aggregator",
        "gateway",
    ]


def test_encryption_key_is_made_once_and_private(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    first = ctx.encryption_key()
    second = ctx.encryption_key()
    assert first == second
    assert len(first) >= 43
    mode = stat.S_IMODE((tmp_path / "state" / "secrets.env").stat().st_mode)
    assert mode == 0o600


def _sleeper_part(ctx: Any, port: int) -> Any:
    class Sleeper(stack.Part):  # type: ignore[misc,name-defined]
        name = "sleeper"

        @property
        def port(self) -> int:
            return port

        def healthy(self) -> bool:
            return bool(self.our_pid() is not None)

        def launch(self) -> None:
            self.spawn(["sleep", "300"])

    return Sleeper(ctx)


def test_a_process_is_tracked_restarted_and_stopped(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    part = _sleeper_part(ctx, _free_port())
    assert part.ensure() == "started"
    pid = part.our_pid()
    assert pid is not None
    assert part.ensure() == "running"
    assert "sleep" in Path(f"/proc/{pid}/cmdline").read_text()

    # A killed process leaves a stale pidfile: it is noticed and the part starts again.
    os.kill(pid, signal.SIGKILL)
    ctx.children.pop("sleeper").wait(timeout=5)
    assert part.our_pid() is None
    assert not part.pidfile.exists()
    assert part.ensure() == "started"
    second = part.our_pid()
    assert second not in (None, pid)

    part.stop()
    assert not part.pidfile.exists()
    assert stack.pid_start_time(second) is None
    log = part.log.read_text()
    assert log.count("stack.py: sleep 300") == 2


def test_something_else_on_the_port_is_used_and_left_alone(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        part = _sleeper_part(ctx, listener.getsockname()[1])
        assert part.ensure() == "external"
        assert not part.pidfile.exists()
        part.stop()
        assert part.state() == "external"


def test_waiting_fails_fast_with_the_log_when_the_process_dies(tmp_path: Path) -> None:
    ctx = _context(tmp_path)

    class Crasher(stack.Part):  # type: ignore[misc,name-defined]
        name = "crasher"
        port = _free_port()

        def healthy(self) -> bool:
            return False

        def launch(self) -> None:
            self.spawn(["sh", "-c", "echo boom-in-the-log; exit 3"])

    part = Crasher(ctx)
    part.ensure()
    started = time.monotonic()
    with pytest.raises(stack.StackError, match="boom-in-the-log"):
        part.wait()
    assert time.monotonic() - started < 10
    ctx.children.pop("crasher").wait(timeout=5)
