"""The Prometheus configuration and alert rules, checked and unit-tested with promtool."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.compose_check import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool (Debian's prometheus package); fail with how to get it when missing."""
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: apt-get install prometheus"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, cwd=PROMETHEUS, timeout=120, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.docker.yml"])
def test_promtool_accepts_the_config_and_its_rules(config: str) -> None:
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_fail_when_an_alert_changes(tmp_path: Path) -> None:
    # The unit tests pin behaviour: a threshold raised tenfold must break them.
    changed = RULES.read_text().replace("> 0.05", "> 0.5")
    assert changed != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(changed)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    binary = shutil.which("promtool")
    assert binary
    result = subprocess.run(
        [binary, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "GatewayHigh5xxRatio" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert sorted(names - firing) == [], "alerts never shown firing"
    assert sorted(names - quiet) == [], "alerts never shown staying quiet"


def test_every_alert_names_a_severity_and_a_runbook_that_exists() -> None:
    readme = (REPO / "README.md").read_text().lower()
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"README.md#{rule['alert'].lower()}"
        assert f"#### {rule['alert'].lower()}" in readme, f"README has no runbook {runbook}"
