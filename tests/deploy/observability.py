"""What alert rules and dashboards read: their PromQL, their SQL and the metric names in them."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.compose_check import REPO

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
# Prometheus makes these itself; no service emits them.
SYNTHETIC = frozenset({"up"})
METRIC = re.compile(r"\b(capps_[a-z0-9_]+|up)\b(?!\s*\()")
THRESHOLD = re.compile(r"\s*(>|<|>=|<=|==|!=)\s*[0-9.e+-]+\s*$")
# Grafana's interval macros, replaced by what a 1-hour view would use.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h"}


def alert_expressions() -> dict[str, str]:
    """Each alert's expression, by alert name."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {
        rule["alert"]: " ".join(rule["expr"].split())
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    }


def without_threshold(expr: str) -> str:
    """The measured quantity of an alert (`q > 0.05` -> `q`): it answers even when quiet."""
    return THRESHOLD.sub("", expr)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_files() -> list[Path]:
    """The provisioned dashboards."""
    return sorted(DASHBOARDS.glob("*.json"))


def dashboard_queries() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, target) for every query target of every dashboard."""
    for path in dashboard_files():
        board = json.loads(path.read_text())
        for panel in panels(board):
            for target in panel.get("targets", []):
                yield f"{path.name} / {panel['title']} / {target['refId']}", target


def dashboard_promql() -> dict[str, str]:
    """Every PromQL expression of the dashboards, Grafana macros replaced, by where it is."""
    found = {}
    for where, target in dashboard_queries():
        if "expr" in target:
            expr = target["expr"]
            for macro, value in GRAFANA_INTERVALS.items():
                expr = expr.replace(macro, value)
            found[where] = expr
    return found


def dashboard_sql() -> dict[str, str]:
    """Every SQL query of the dashboards (Grafana macros left in), by where it is."""
    return {where: target["rawSql"] for where, target in dashboard_queries() if "rawSql" in target}


def metric_names(expressions: list[str]) -> set[str]:
    """Metric names read by these expressions (functions and keywords excluded)."""
    names = set()
    for expr in expressions:
        # Label values and strings are not metric names.
        bare = re.sub(r'"[^"]*"', '""', expr)
        names |= set(METRIC.findall(bare))
    return names
