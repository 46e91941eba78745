"""The Grafana dashboards and datasources, checked without a Grafana: generated, wired, bounded."""

import importlib.util
import json
import re
import sys
from types import ModuleType

import yaml

from tests.deploy.compose_check import REPO
from tests.deploy.observability import (
    dashboard_files,
    dashboard_promql,
    dashboard_queries,
    dashboard_sql,
    panels,
)

GRAFANA = REPO / "deploy" / "grafana"
READER_SQL = REPO / "deploy" / "postgres" / "grafana-reader.sql"
# Labels that would make one series per app or tenant: never on a Prometheus metric.
PER_APP_LABELS = ("app", "app_id", "client_id", "tenant", "tenant_id")


def generator() -> ModuleType:
    """deploy/grafana/dashboards.py, loaded as a module."""
    spec = importlib.util.spec_from_file_location("dashboards", GRAFANA / "dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_the_checked_in_dashboards_are_what_the_generator_makes() -> None:
    module = generator()
    for name, board in module.DASHBOARDS.items():
        text = (GRAFANA / "dashboards" / name).read_text()
        assert text == module.render(board), f"run python deploy/grafana/dashboards.py ({name})"
    assert {path.name for path in dashboard_files()} == set(module.DASHBOARDS)


def test_there_are_dashboards_for_each_part_and_for_per_app_usage() -> None:
    titles = {json.loads(path.read_text())["title"] for path in dashboard_files()}
    for part in ("Gateway", "Usage aggregator", "Registry", "Per-app usage"):
        assert f"Connected Apps / {part}" in titles


def test_every_query_uses_a_provisioned_datasource() -> None:
    provisioned = set()
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            provisioned.add((source["type"], source["uid"]))
    assert {uid for _, uid in provisioned} == {"prometheus", "postgres"}
    for where, target in dashboard_queries():
        source = target["datasource"]
        assert (source["type"], source["uid"]) in provisioned, where
    for path in dashboard_files():
        for panel in panels(json.loads(path.read_text())):
            if panel["type"] != "row":
                assert panel["targets"], f"{path.name} / {panel['title']} has no query"


def test_per_app_figures_come_from_postgresql_never_from_prometheus_labels() -> None:
    for where, expr in dashboard_promql().items():
        for label in PER_APP_LABELS:
            assert not re.search(rf"\b{label}\s*(=|!=|=~|!~|,|\))", expr), (where, label)
    usage = [sql for where, sql in dashboard_sql().items() if where.startswith("usage.json")]
    assert any("usage_day" in sql for sql in usage)
    assert any("usage_route_day" in sql for sql in usage)


def test_dashboard_sql_reads_only_what_grafana_reader_may_read() -> None:
    granted = set(re.findall(r"'(usage_\w+|app_last_seen)'", READER_SQL.read_text()))
    granted |= set(re.findall(r"GRANT SELECT \([^)]*\) ON (\w+)", READER_SQL.read_text()))
    assert {"usage_day", "usage_minute", "oauth_clients", "tenants"} <= granted
    for where, sql in dashboard_sql().items():
        tables = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", sql, flags=re.I))
        assert tables, where
        assert tables <= granted, (where, tables - granted)
    secret_columns = ("secret_hash", "private_key", "client_secrets", "signing_keys")
    for where, sql in dashboard_sql().items():
        assert not any(column in sql for column in secret_columns), where
