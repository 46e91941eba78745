"""Prometheus and Grafana against the running stack, with traffic: everything they read exists.

Every scrape target is up; every metric name an alert or a panel reads is emitted by a
service's /metrics; no metric carries a per-app label; every PromQL expression of the alert
rules (without its threshold) and of the dashboards returns data from the stack's Prometheus;
every SQL query of the per-app usage dashboard returns rows from the stack's PostgreSQL.
"""

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from tests.deploy.compose_check import REPO
from tests.deploy.observability import (
    SYNTHETIC,
    alert_expressions,
    dashboard_promql,
    dashboard_sql,
    metric_names,
    without_threshold,
)
from tests.e2e.conftest import AppFactory, SessionFactory
from tests.infra import Stack

pytestmark = pytest.mark.e2e

DEADLINE_S = 120.0
PER_APP_LABELS = {"app", "app_id", "client_id", "tenant", "tenant_id"}
METRIC_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


def env_url(name: str) -> str:
    """A URL from .local/stack.env; the test fails saying how to get it."""
    value = os.environ.get(name)
    assert value, f"{name} is not set: run `make up` and export .local/stack.env"
    return value.rstrip("/")


def wait_until(check: Callable[[], list[str]], what: str) -> None:
    """Poll `check` (it returns what is still missing) until nothing is, or fail naming it."""
    deadline = time.monotonic() + DEADLINE_S
    missing = check()
    while missing and time.monotonic() < deadline:
        time.sleep(1.0)
        missing = check()
    assert not missing, f"{what} after {DEADLINE_S:g}s: {missing}"


def prometheus_query(expr: str) -> list[dict[str, Any]]:
    """The instant result of a PromQL expression."""
    answer = requests.get(
        f"{env_url('PROMETHEUS_URL')}/api/v1/query", params={"query": expr}, timeout=10
    )
    body = answer.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def scrape_pages() -> dict[str, str]:
    """The /metrics text of each of our services."""
    urls = {
        "gateway": env_url("GATEWAY_ADMIN_URL"),
        "registry": env_url("REGISTRY_URL"),
        "aggregator": env_url("AGGREGATOR_URL"),
    }
    return {name: requests.get(f"{url}/metrics", timeout=10).text for name, url in urls.items()}


@pytest.fixture(scope="module")
def traffic(
    stack: Stack, admin: OAuth2Session, create_app: AppFactory, oauth_session: SessionFactory
) -> str:
    """Calls of every kind a dashboard shows, counted by the aggregator; returns the app id."""
    app_id, secret = create_app(["Alert.Read.All"])
    partner = oauth_session(app_id, secret)
    statuses = [
        partner.get(f"{stack.gateway_url}/api/alerts", timeout=10).status_code for _ in range(31)
    ]
    statuses.append(partner.get(f"{stack.gateway_url}/api/machines", timeout=10).status_code)
    statuses.append(requests.get(f"{stack.gateway_url}/api/alerts", timeout=10).status_code)
    refused = requests.post(
        f"{stack.registry_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(app_id, "capps_wrong"),
        timeout=10,
    )
    assert refused.status_code == 401
    assert statuses.count(200) == 31
    assert 403 in statuses
    assert 401 in statuses
    counted = 32  # the 31 allowed calls and the forbidden one carry the app's token

    def not_counted_yet() -> list[str]:
        app = admin.get(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10).json()
        return [] if app["requests_24h"] >= counted else [f"{app['requests_24h']}/{counted}"]

    wait_until(not_counted_yet, "the calls are not counted")
    return app_id


def test_prometheus_scrapes_every_target() -> None:
    def down() -> list[str]:
        answer = requests.get(f"{env_url('PROMETHEUS_URL')}/api/v1/targets", timeout=10).json()
        targets = answer["data"]["activeTargets"]
        assert {t["labels"]["job"] for t in targets} >= {"gateway", "registry", "usage-aggregator"}
        return [t["labels"]["job"] for t in targets if t["health"] != "up"]

    wait_until(down, "targets are not up")


def test_every_metric_read_by_rules_and_dashboards_is_emitted(traffic: str) -> None:
    used = metric_names([*alert_expressions().values(), *dashboard_promql().values()])
    assert len(used) > 20, used
    emitted: set[str] = set()
    for text in scrape_pages().values():
        for family in re.findall(r"^# TYPE (\S+) \S+$", text, flags=re.M):
            emitted |= {family + suffix for suffix in METRIC_SUFFIXES}
        emitted |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, flags=re.M))
    assert sorted(used - SYNTHETIC - NOT_CONFIGURED_METRICS.keys() - emitted) == []
    declared = (REPO / "services/gateway/src/capps_gateway/metrics.py").read_text()
    for name in NOT_CONFIGURED_METRICS:
        assert f'"{name}"' in declared, name


def test_no_metric_carries_a_per_app_label(traffic: str) -> None:
    for service, text in scrape_pages().items():
        labels = set(re.findall(r"[{,]([a-zA-Z_][a-zA-Z0-9_]*)=\"", text))
        assert not labels & PER_APP_LABELS, (service, labels & PER_APP_LABELS)
        assert traffic not in text, f"{service} exposes an app id in /metrics"


# Metrics with one series per external issuer: none where no issuer is configured. The test
# below still finds each declared in the gateway's code.
NOT_CONFIGURED_METRICS = {
    "capps_gateway_issuer_key_fetches_total": "no external token issuer is configured locally",
}


# Alerts on a feature the local stack does not configure: their series exist only where it is
# (their metric names are still checked above, in the live /metrics).
NOT_CONFIGURED_LOCALLY = {
    "GatewayIssuerKeysStale": "no external token issuer (GATEWAY_ISSUERS_FILE) is configured",
}


def test_every_alert_expression_answers(traffic: str) -> None:
    expressions = {
        name: without_threshold(expr)
        for name, expr in alert_expressions().items()
        if name not in NOT_CONFIGURED_LOCALLY
    }
    assert set(NOT_CONFIGURED_LOCALLY) <= set(alert_expressions()), "a stale exemption"
    assert all(expr != alert_expressions()[name] for name, expr in expressions.items())
    wait_until(
        lambda: [name for name, expr in expressions.items() if not prometheus_query(expr)],
        "alert expressions return no data",
    )


def test_every_dashboard_promql_expression_answers(traffic: str) -> None:
    expressions = dashboard_promql()
    assert len(expressions) > 30
    wait_until(
        lambda: [where for where, expr in expressions.items() if not prometheus_query(expr)],
        "dashboard queries return no data",
    )


def grafana_sql_to_postgres(sql: str) -> str:
    """A dashboard query with Grafana's macros and variables as a 7-day view of all apps."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '7 days' AND now()", sql)
    sql = sql.replace("$__timeFrom()", "(now() - interval '7 days')")
    sql = sql.replace("$__timeTo()", "now()")
    sql = sql.replace("($tenant)", "(SELECT id FROM tenants)")
    sql = sql.replace("($app)", "(SELECT id FROM oauth_clients WHERE kind = 'app')")
    assert "$" not in sql, f"a Grafana macro or variable is not handled: {sql}"
    return sql


def grafana_reader_url() -> str:
    """Grafana's role, made by deploy/postgres/grafana-reader.sql as compose runs it."""
    password = secrets.token_hex(16)
    done = subprocess.run(
        [
            shutil.which("psql") or "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"reader_password={password}",
            "-f",
            str(REPO / "deploy" / "postgres" / "grafana-reader.sql"),
            env_url("DATABASE_URL"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    parts = urlsplit(env_url("DATABASE_URL"))
    netloc = f"grafana_reader:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_every_usage_dashboard_query_returns_rows(traffic: str) -> None:
    """As Grafana's read-only role: row-level security must still let it name every app."""
    queries = {where: grafana_sql_to_postgres(sql) for where, sql in dashboard_sql().items()}
    assert len(queries) >= 6
    reader_url = grafana_reader_url()

    async def empty() -> list[str]:
        connection = await asyncpg.connect(reader_url)
        try:
            missing = []
            async with connection.transaction(readonly=True):
                for where, sql in queries.items():
                    if not await connection.fetch(sql):
                        missing.append(where)
            return missing
        finally:
            await connection.close()

    # Its own event loop in a worker thread: this sync test must not depend on whether another
    # fixture of the session (a browser driver) keeps a loop running in the main thread.
    with ThreadPoolExecutor(max_workers=1) as worker:
        wait_until(
            lambda: worker.submit(asyncio.run, empty()).result(), "usage queries return no rows"
        )
