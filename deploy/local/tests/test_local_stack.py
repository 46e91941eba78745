"""Unit tests of the local stack (capps_stack): configuration, generated files, pid lifecycle."""

import os
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from capps_kit.settings import API_AUDIENCE
from capps_stack import cli, config, environment, kafka, part, postgres, process, prometheus
from tests.infra import free_port

REPO = Path(__file__).resolve().parents[3]


def test_ports_default_to_the_design_addresses() -> None:
    ports = config.Ports.from_env({})
    assert (ports.kafka, ports.postgres, ports.redis, ports.prometheus) == (9092, 5432, 6379, 9090)
    assert (ports.gateway, ports.gateway_admin, ports.registry) == (8000, 8001, 8080)
    assert (ports.aggregator, ports.demo_api) == (6066, 8090)


def test_ports_follow_their_variables() -> None:
    ports = config.Ports.from_env({"CAPPS_KAFKA_PORT": "59092", "GATEWAY_ADMIN_PORT": "58001"})
    assert ports.kafka == 59092
    assert ports.gateway_admin == 58001
    assert ports.registry == 8080


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1"])
def test_a_bad_port_names_its_variable(value: str) -> None:
    with pytest.raises(config.StackError, match="CAPPS_REDIS_PORT"):
        config.Ports.from_env({"CAPPS_REDIS_PORT": value})


def test_two_parts_on_one_port_are_refused() -> None:
    with pytest.raises(config.StackError, match="share a port"):
        config.Ports.from_env({"REGISTRY_PORT": "8000"})


def test_stack_env_round_trips_and_is_shell_safe() -> None:
    values = config.urls(config.Ports.from_env({"CAPPS_POSTGRES_PORT": "55432"}))
    text = config.env_file_text({**values, "ODD": "a b'c"})
    assert "DATABASE_URL=postgresql://capps:capps@127.0.0.1:55432/capps\n" in text
    assert config.parse_env_file(text) == {**values, "ODD": "a b'c"}
    for key in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "REGISTRY_URL", "GATEWAY_URL"):
        assert key in values


def test_services_get_the_agreed_environment(tmp_path: Path) -> None:
    ports = config.Ports.from_env({"REGISTRY_PORT": "58080"})
    secrets = {"REGISTRY_KEY_ENCRYPTION_KEY": "k" * 43, "REGISTRY_SECRET_PEPPER": "p" * 43}
    registry = environment.service_environment("registry", ports, tmp_path, REPO, secrets)
    gateway = environment.service_environment("gateway", ports, tmp_path, REPO, secrets)
    aggregator = environment.service_environment("aggregator", ports, tmp_path, REPO, secrets)
    assert registry["TOKEN_ISSUER"] == gateway["REGISTRY_URL"] == "http://127.0.0.1:58080"
    assert registry["TOKEN_AUDIENCE"] == gateway["TOKEN_AUDIENCE"] == API_AUDIENCE
    assert gateway["GATEWAY_UPSTREAM_URL"] == "http://127.0.0.1:8090"
    assert registry["CATALOG_PATH"] == gateway["CATALOG_PATH"] == str(REPO / "config/catalog.yaml")
    assert aggregator["AGGREGATOR_DATA_DIR"] == str(tmp_path / "aggregator")
    assert registry["ENVIRONMENT"] == gateway["ENVIRONMENT"] == "development"
    assert registry["REGISTRY_PORT"] == "58080"
    assert gateway["GATEWAY_ADMIN_PORT"] == "8001"
    assert registry["REGISTRY_SECRET_PEPPER"] == "p" * 43


def test_each_service_gets_only_its_own_secrets_and_stores(tmp_path: Path) -> None:
    secrets = {"REGISTRY_KEY_ENCRYPTION_KEY": "k" * 43, "REGISTRY_SECRET_PEPPER": "p" * 43}
    ports = config.Ports()
    gateway = environment.service_environment("gateway", ports, tmp_path, REPO, secrets)
    aggregator = environment.service_environment("aggregator", ports, tmp_path, REPO, secrets)
    for env in (gateway, aggregator):
        assert "REGISTRY_KEY_ENCRYPTION_KEY" not in env
        assert "REGISTRY_SECRET_PEPPER" not in env
    assert "DATABASE_URL" not in gateway
    assert gateway["REDIS_URL"] == aggregator["REDIS_URL"]


def test_a_secret_the_stack_did_not_generate_is_left_to_the_default(tmp_path: Path) -> None:
    older = {"REGISTRY_KEY_ENCRYPTION_KEY": "k" * 43}
    env = environment.service_environment("registry", config.Ports(), tmp_path, REPO, older)
    assert "REGISTRY_SECRET_PEPPER" not in env


def test_kafka_properties_use_the_ports(tmp_path: Path) -> None:
    ports = config.Ports.from_env({"CAPPS_KAFKA_PORT": "59092", "CAPPS_KAFKA_CONTROLLER_PORT": "9"})
    text = kafka.kafka_server_properties(ports, tmp_path / "data", "pw-" + "x" * 20)
    assert "controller.quorum.voters=1@127.0.0.1:9\n" in text
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:59092,CONTROLLER://127.0.0.1:9\n" in text
    assert "advertised.listeners=SASL_PLAINTEXT://127.0.0.1:59092\n" in text
    assert f"log.dirs={tmp_path / 'data'}\n" in text


def test_kafka_requires_scram_and_acls_with_only_the_admin_super(tmp_path: Path) -> None:
    text = kafka.kafka_server_properties(config.Ports(), tmp_path / "data", "pw-" + "x" * 20)
    lines = set(text.splitlines())
    # No listener takes unauthenticated clients; nothing is allowed without an ACL.
    assert (
        "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
        in lines
    )
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in lines
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in lines
    assert "allow.everyone.if.no.acl.found=false" in lines
    assert "super.users=User:admin" in lines


def test_each_service_logs_in_to_kafka_as_itself(tmp_path: Path) -> None:
    passwords = {f"KAFKA_{name.upper()}_PASSWORD": f"{name}-pw" for name in config.KAFKA_PRINCIPALS}
    for service in config.KAFKA_PRINCIPALS:
        env = environment.service_environment(service, config.Ports(), tmp_path, REPO, passwords)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["KAFKA_SASL_USERNAME"] == service
        assert env["KAFKA_SASL_PASSWORD"] == f"{service}-pw"
        assert not [
            name for name in env if name.endswith("_PASSWORD") and name != "KAFKA_SASL_PASSWORD"
        ]


def test_prometheus_config_follows_overridden_ports() -> None:
    template = (REPO / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert prometheus.prometheus_config(template, config.Ports()) == template
    moved = prometheus.prometheus_config(
        template, config.Ports.from_env({"GATEWAY_ADMIN_PORT": "58001", "REGISTRY_PORT": "58080"})
    )
    assert "'127.0.0.1:58001'" in moved
    assert "'127.0.0.1:58080'" in moved
    assert "'127.0.0.1:6066'" in moved


def test_kafka_cluster_id_has_kafkas_format() -> None:
    for _ in range(200):
        cluster_id = kafka.new_kafka_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_start_time_survives_odd_command_names() -> None:
    fields = " ".join(["S", *[str(n) for n in range(4, 30)]])
    assert process.start_time_from_stat(f"42 (a) b (c) {fields}") == "22"
    zombie = fields.replace("S", "Z", 1)
    assert process.start_time_from_stat(f"42 (x) {zombie}") is None


def test_pidfile_parsing() -> None:
    assert process.parse_pidfile("123 456\n") == (123, "456")
    assert process.parse_pidfile("") is None
    assert process.parse_pidfile("abc 1") is None


def test_postgres_versions_sort_numerically() -> None:
    assert sorted(["9.6", "15", "10"], key=postgres.version_key) == ["9.6", "10", "15"]


def _context(tmp_path: Path) -> Any:
    return cli.make_context({"CAPPS_LOCAL_DIR": str(tmp_path / "state")})


def test_unknown_parts_are_refused(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    with pytest.raises(config.StackError, match="unknown part"):
        cli.select(cli.all_parts(ctx), ["kafak"])
    names = [part.name for part in cli.all_parts(ctx)]
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


def test_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    first = ctx.secrets()
    second = ctx.secrets()
    assert first == second
    assert set(first) == {"REGISTRY_KEY_ENCRYPTION_KEY", "REGISTRY_SECRET_PEPPER"}
    assert all(len(value) >= 43 for value in first.values())
    assert first["REGISTRY_KEY_ENCRYPTION_KEY"] != first["REGISTRY_SECRET_PEPPER"]
    mode = stat.S_IMODE((tmp_path / "state" / "secrets.env").stat().st_mode)
    assert mode == 0o600


def test_an_older_secrets_file_gets_no_new_pepper(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (tmp_path / "state" / "secrets.env").write_text("REGISTRY_KEY_ENCRYPTION_KEY=old-key-1234\n")
    assert ctx.secrets() == {"REGISTRY_KEY_ENCRYPTION_KEY": "old-key-1234"}


def _sleeper_part(ctx: Any, port: int) -> Any:
    class Sleeper(part.Part):
        name = "sleeper"

        @property
        def port(self) -> int:
            return port

        def healthy(self) -> bool:
            return bool(self.our_pid() is not None)

        def launch(self) -> None:
            self.spawn(["sleep", "300"])

    return Sleeper(ctx)


def _becomes_sleep(pid: int, deadline_s: float = 30.0) -> bool:
    """Whether `pid` runs `sleep` once its exec is done (a loaded machine may lag behind)."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        # Between fork and exec the command line is the parent's, and empty during the exec.
        if "sleep" in Path(f"/proc/{pid}/cmdline").read_text():
            return True
        time.sleep(0.05)
    return False


def test_a_process_is_tracked_restarted_and_stopped(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    part = _sleeper_part(ctx, free_port())
    assert part.ensure() == "started"
    pid = part.our_pid()
    assert pid is not None
    assert part.ensure() == "running"
    assert _becomes_sleep(pid)

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
    assert process.pid_start_time(second) is None
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


def test_waiting_stops_at_the_death_of_the_process_with_its_log(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    # A timeout far beyond pytest's own: only noticing the death can end the wait.
    ctx.timeout = 3600.0

    class Crasher(part.Part):
        name = "crasher"
        port = free_port()

        def healthy(self) -> bool:
            return False

        def launch(self) -> None:
            self.spawn(["sh", "-c", "echo boom-in-the-log; exit 3"])

    crasher = Crasher(ctx)
    crasher.ensure()
    with pytest.raises(config.StackError, match="exited during start-up") as caught:
        crasher.wait()
    assert "boom-in-the-log" in str(caught.value)
    ctx.children.pop("crasher").wait(timeout=5)
