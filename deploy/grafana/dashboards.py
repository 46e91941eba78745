"""The Grafana dashboards as code: `python deploy/grafana/dashboards.py` rewrites dashboards/*.json.

One definition per panel, in plain data, so a reviewer reads queries rather than JSON layout;
tests check the checked-in JSON is what this file makes and that every query returns data
against the running stack. Standard library only.

Per-app usage comes from PostgreSQL (the usage tables), never from Prometheus: app ids as
metric labels would make one series per app and route, without bound.
"""

# The SQL here is dashboard text built from constants, never from input: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "postgres"}
WIDTH = 24


@dataclass(frozen=True)
class Query:
    """One target: PromQL (expr) or SQL (sql), with its legend or result format."""

    expr: str = ""
    legend: str = ""
    sql: str = ""
    fmt: str = "time_series"  # SQL only: time_series or table


@dataclass(frozen=True)
class Panel:
    """A panel: kind is timeseries, stat, table or barchart; unit is a Grafana unit id."""

    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: rows of panels laid out left to right, top to bottom."""

    uid: str
    title: str
    description: str
    rows: tuple[tuple[str, tuple[Panel, ...]], ...]
    variables: tuple[dict[str, Any], ...] = ()
    time_from: str = "now-1h"
    tags: tuple[str, ...] = field(default=("connected-apps",))


def target(query: Query, ref: str) -> dict[str, Any]:
    """A Grafana target for one query."""
    if query.sql:
        return {
            "refId": ref,
            "datasource": POSTGRES,
            "editorMode": "code",
            "format": query.fmt,
            "rawQuery": True,
            "rawSql": query.sql.strip(),
        }
    return {
        "refId": ref,
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "range": True,
    }


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    """A panel at grid position (x, y)."""
    source = POSTGRES if any(q.sql for q in panel.queries) else PROMETHEUS
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": source,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [target(q, chr(ord("A") + i)) for i, q in enumerate(panel.queries)],
    }
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}
    return body


def dashboard_json(board: Dashboard) -> dict[str, Any]:
    """The whole dashboard document Grafana provisions."""
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row_title, row_panels in board.rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": WIDTH, "h": 1},
                "panels": [],
            }
        )
        next_id, y, x, tallest = next_id + 1, y + 1, 0, 0
        for panel in row_panels:
            if x + panel.width > WIDTH:
                x, y, tallest = 0, y + tallest, 0
            panels.append(panel_json(panel, next_id, x, y))
            next_id, x, tallest = next_id + 1, x + panel.width, max(tallest, panel.height)
        y += tallest
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": list(board.tags),
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": board.time_from, "to": "now"},
        "templating": {"list": list(board.variables)},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["connected-apps"], "asDropdown": True}],
        "panels": panels,
    }


def rate(metric: str, by: str = "", window: str = "$__rate_interval") -> str:
    """sum [by (...)] (rate(metric[window]))."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}[{window}]))"


def p(quantile: float, histogram: str, by: str = "le") -> str:
    """A quantile of a histogram over 5 minutes."""
    return f"histogram_quantile({quantile}, sum by ({by}) (rate({histogram}_bucket[5m])))"


# Counters that only move on failure have no series before the first one: `or vector(0)`
# shows 0 instead of "No data", which reads as "broken" to a person on call.
def failures(metric: str, by: str = "") -> str:
    """A failure counter's rate, 0 when it never moved."""
    return f"{rate(metric, by)} or vector(0)"


GATEWAY = Dashboard(
    uid="capps-gateway",
    title="Connected Apps / Gateway",
    description="The proxy partner apps call: traffic, answers, latency, event delivery, app view.",
    rows=(
        (
            "Traffic",
            (
                Panel(
                    "Calls per second by status",
                    (Query(rate("capps_gateway_requests_total", "status"), "{{status}}"),),
                    unit="reqps",
                ),
                Panel(
                    "5xx ratio (alert above 5%)",
                    (
                        Query(
                            "("
                            + rate('capps_gateway_requests_total{status=~"5.."}')
                            + " or vector(0)) / "
                            + rate("capps_gateway_requests_total"),
                            "5xx",
                        ),
                    ),
                    unit="percentunit",
                ),
                Panel(
                    "Latency (upstream included)",
                    (
                        Query(p(0.5, "capps_gateway_request_duration_seconds"), "p50"),
                        Query(p(0.99, "capps_gateway_request_duration_seconds"), "p99"),
                    ),
                    unit="s",
                ),
                Panel(
                    "p99 latency by route",
                    (
                        Query(
                            p(0.99, "capps_gateway_request_duration_seconds", "le, route"),
                            "{{route}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Refused before an app was known, by reason",
                    (
                        Query(
                            failures("capps_gateway_unauthenticated_total", "reason"), "{{reason}}"
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Upstream failures by kind",
                    (Query(failures("capps_gateway_upstream_errors_total", "kind"), "{{kind}}"),),
                    unit="reqps",
                ),
                Panel(
                    "Open connections and calls in progress (503 past GATEWAY_MAX_IN_FLIGHT)",
                    (
                        Query("sum(capps_gateway_connections)", "connections"),
                        Query("sum(capps_gateway_calls_in_progress)", "calls in progress"),
                    ),
                    unit="short",
                ),
                Panel(
                    "Event loop lag, p50 / p99 (the wait a call arriving then would add)",
                    (
                        Query(p(0.5, "capps_gateway_loop_lag_seconds"), "p50"),
                        Query(p(0.99, "capps_gateway_loop_lag_seconds"), "p99"),
                    ),
                    unit="s",
                ),
                Panel(
                    "Per-call modules compiled (1) or interpreted (0, any process; gcc missing?)",
                    (Query("min(capps_gateway_compiled)", "compiled"),),
                    unit="short",
                ),
                Panel(
                    "External issuers: key fetches by result (0 when none is configured)",
                    (
                        Query(
                            failures("capps_gateway_issuer_key_fetches_total", "issuer, result"),
                            "{{issuer}} {{result}}",
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
        (
            "Usage events",
            (
                Panel(
                    "Events to Kafka",
                    (
                        Query(rate("capps_gateway_events_sent_total"), "acknowledged"),
                        Query(failures("capps_gateway_events_failed_total", "stage"), "failed"),
                        Query(failures("capps_gateway_events_spooled_total"), "spooled"),
                        Query(failures("capps_gateway_events_replayed_total"), "replayed"),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Spool on disk (alert while it keeps growing)",
                    (
                        Query("sum(capps_gateway_spool_bytes)", "bytes"),
                        Query("sum(capps_gateway_spool_segments)", "segments"),
                    ),
                    unit="bytes",
                ),
                Panel(
                    "Kafka reachable (1) or spooling (0), per gateway",
                    (Query("capps_gateway_kafka_healthy", "{{instance}}"),),
                    width=8,
                ),
                Panel(
                    "Events waiting for an acknowledgement",
                    (Query("sum by (where) (capps_gateway_events_pending)", "{{where}}"),),
                    width=8,
                ),
                Panel(
                    "Events sent but never acknowledged (maybe lost)",
                    (
                        Query(
                            "sum(increase(capps_gateway_events_ambiguous_total[1h])) or vector(0)",
                            "last hour",
                        ),
                    ),
                    kind="stat",
                    width=8,
                ),
            ),
        ),
        (
            "App state view",
            (
                Panel(
                    "Apps known and records behind",
                    (
                        Query("max(capps_gateway_apps_known)", "apps known"),
                        Query("max(capps_gateway_app_view_lag_records)", "records behind"),
                    ),
                ),
                Panel(
                    "App state records and waits for new apps",
                    (
                        Query(
                            rate("capps_gateway_app_state_records_total", "result"), "{{result}}"
                        ),
                        Query(
                            failures("capps_gateway_app_waits_total", "result"), "wait {{result}}"
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
    ),
)

AGGREGATOR = Dashboard(
    uid="capps-aggregator",
    title="Connected Apps / Usage aggregator",
    description="Counting request events into PostgreSQL and Redis: throughput, lag, batches, DLQ.",
    rows=(
        (
            "Counting",
            (
                Panel(
                    "Events counted per second, by sink",
                    (
                        Query(rate("capps_aggregator_events_counted_total", "sink"), "{{sink}}"),
                        Query(
                            failures("capps_aggregator_duplicates_skipped_total", "sink"),
                            "duplicates skipped {{sink}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Lag: records not counted yet (alert above 50,000 for 10 min)",
                    (
                        Query("sum(capps_aggregator_lag_records)", "total"),
                        Query(
                            "sum by (partition) (capps_aggregator_lag_records)", "p{{partition}}"
                        ),
                    ),
                ),
                Panel(
                    "Produced by gateways vs counted",
                    (
                        Query(rate("capps_gateway_events_sent_total", window="5m"), "produced"),
                        Query(
                            rate(
                                'capps_aggregator_events_counted_total{sink="postgres"}',
                                window="5m",
                            )
                            + " + ("
                            + failures('capps_aggregator_duplicates_skipped_total{sink="postgres"}')
                            + ")",
                            "consumed",
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
        (
            "Batches and failures",
            (
                Panel(
                    "Batch duration",
                    (
                        Query(p(0.5, "capps_aggregator_batch_seconds"), "p50"),
                        Query(p(0.99, "capps_aggregator_batch_seconds"), "p99"),
                    ),
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Records per batch (p50)",
                    (Query(p(0.5, "capps_aggregator_batch_events"), "p50"),),
                    width=8,
                ),
                Panel(
                    "Failed batch attempts (retried) and records sent to the DLQ",
                    (
                        Query(failures("capps_aggregator_batch_failures_total"), "failed batches"),
                        Query(failures("capps_aggregator_dead_lettered_total"), "dead-lettered"),
                    ),
                    unit="ops",
                    width=8,
                ),
            ),
        ),
    ),
)

REGISTRY = Dashboard(
    uid="capps-registry",
    title="Connected Apps / Registry",
    description="The OAuth 2.0 server and admin API: requests, tokens, outbox to the gateways.",
    rows=(
        (
            "HTTP",
            (
                Panel(
                    "Requests per second by route",
                    (Query(rate("capps_registry_http_requests_total", "route"), "{{route}}"),),
                    unit="reqps",
                ),
                Panel(
                    "p99 latency by route",
                    (
                        Query(
                            p(0.99, "capps_registry_http_request_duration_seconds", "le, route"),
                            "{{route}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Answers by status class",
                    (
                        *(
                            Query(
                                failures(f'capps_registry_http_requests_total{{status=~"{c}.."}}'),
                                f"{c}xx",
                            )
                            for c in "245"
                        ),
                    ),
                    unit="reqps",
                ),
            ),
        ),
        (
            "Tokens",
            (
                Panel(
                    "Tokens issued by client kind",
                    (Query(rate("capps_registry_tokens_issued_total", "kind"), "{{kind}}"),),
                    unit="reqps",
                ),
                Panel(
                    "Token requests refused by reason",
                    (
                        Query(
                            failures("capps_registry_tokens_refused_total", "reason"), "{{reason}}"
                        ),
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Token endpoint 5xx ratio (alert above 1%)",
                    (
                        Query(
                            "("
                            + rate(
                                'capps_registry_http_requests_total{route="/oauth2/token",'
                                'status=~"5.."}'
                            )
                            + " or vector(0)) / "
                            + rate('capps_registry_http_requests_total{route="/oauth2/token"}'),
                            "5xx",
                        ),
                    ),
                    unit="percentunit",
                ),
            ),
        ),
        (
            "Outbox (app changes on their way to the gateways)",
            (
                Panel(
                    "Backlog and oldest entry",
                    (
                        Query("max(capps_registry_outbox_backlog)", "entries waiting"),
                        Query("max(capps_registry_outbox_oldest_age_seconds)", "oldest (s)"),
                    ),
                ),
                Panel(
                    "Published and failed relay rounds",
                    (
                        Query(rate("capps_registry_outbox_published_total"), "published"),
                        Query(
                            failures("capps_registry_outbox_publish_failures_total", "stage"),
                            "failed {{stage}}",
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
    ),
)

# Grafana's SQL variables: __text is shown, __value is substituted (quoted, comma-separated).
TENANT_VARIABLE: dict[str, Any] = {
    "name": "tenant",
    "label": "Tenant",
    "type": "query",
    "datasource": POSTGRES,
    "query": "SELECT name AS __text, id AS __value FROM tenants ORDER BY name",
    "definition": "SELECT name AS __text, id AS __value FROM tenants ORDER BY name",
    "refresh": 1,
    "multi": True,
    "includeAll": True,
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
}
APP_VARIABLE: dict[str, Any] = {
    "name": "app",
    "label": "App",
    "type": "query",
    "datasource": POSTGRES,
    "query": (
        "SELECT name || ' (' || id || ')' AS __text, id AS __value FROM oauth_clients "
        "WHERE kind = 'app' AND tenant_id IN ($tenant) ORDER BY name"
    ),
    "definition": "apps of the selected tenants",
    "refresh": 2,
    "multi": True,
    "includeAll": True,
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
}

# Days of the dashboard's time range, as dates (usage_day and usage_route_day are per UTC day).
DAYS = "day BETWEEN $__timeFrom()::date AND $__timeTo()::date"


def top_apps(order_by: str) -> str:
    """The 10 apps of the selected tenants with the most `order_by` in the time range."""
    return f"""
SELECT coalesce(c.name, u.app_id) AS app, t.name AS tenant,
       sum(u.requests) AS calls, sum(u.denied) AS denied, sum(u.throttled) AS throttled,
       sum(u.status_5xx) AS "5xx"
FROM usage_day u
LEFT JOIN oauth_clients c ON c.id = u.app_id
LEFT JOIN tenants t ON t.id = u.tenant_id
WHERE u.{DAYS} AND u.tenant_id IN ($tenant)
GROUP BY 1, 2
ORDER BY {order_by} DESC, calls DESC
LIMIT 10
"""


USAGE = Dashboard(
    uid="capps-usage",
    title="Connected Apps / Per-app usage",
    description=(
        "Per-app usage from the usage tables in PostgreSQL (the system of record), read by "
        "Grafana's read-only role; apps are never Prometheus labels."
    ),
    time_from="now-7d",
    variables=(TENANT_VARIABLE, APP_VARIABLE),
    rows=(
        (
            "Top apps in the time range",
            (
                Panel(
                    "Top apps by calls",
                    (Query(sql=top_apps("calls"), fmt="table"),),
                    "table",
                    width=8,
                ),
                Panel(
                    "Top apps by denied calls (401/403)",
                    (Query(sql=top_apps("denied"), fmt="table"),),
                    "table",
                    width=8,
                ),
                Panel(
                    "Top apps by throttled calls (429)",
                    (Query(sql=top_apps("throttled"), fmt="table"),),
                    "table",
                    width=8,
                ),
            ),
        ),
        (
            "Selected apps",
            (
                Panel(
                    "Calls per minute",
                    (
                        Query(
                            sql="""
SELECT minute AS time, app_id AS metric, requests
FROM usage_minute
WHERE $__timeFilter(minute) AND app_id IN ($app)
ORDER BY 1
"""
                        ),
                    ),
                    unit="short",
                ),
                Panel(
                    "Answers per day by status class",
                    (
                        Query(
                            sql=f"""
SELECT day::timestamptz AS time, sum(status_2xx) AS "2xx", sum(status_3xx) AS "3xx",
       sum(status_4xx) AS "4xx", sum(status_5xx) AS "5xx", sum(denied) AS denied,
       sum(throttled) AS throttled
FROM usage_day
WHERE {DAYS} AND app_id IN ($app)
GROUP BY 1
ORDER BY 1
"""
                        ),
                    ),
                    kind="barchart",
                ),
                Panel(
                    "Latency per minute (mean and max)",
                    (
                        Query(
                            sql="""
SELECT minute AS time,
       sum(latency_ms_sum) / nullif(sum(requests), 0) AS "mean ms",
       max(latency_ms_max) AS "max ms"
FROM usage_minute
WHERE $__timeFilter(minute) AND app_id IN ($app)
GROUP BY 1
ORDER BY 1
"""
                        ),
                    ),
                    unit="ms",
                ),
                Panel(
                    "Bytes per day",
                    (
                        Query(
                            sql=f"""
SELECT day::timestamptz AS time, sum(bytes_in) AS "in", sum(bytes_out) AS "out"
FROM usage_day
WHERE {DAYS} AND app_id IN ($app)
GROUP BY 1
ORDER BY 1
"""
                        ),
                    ),
                    unit="bytes",
                ),
                Panel(
                    "Routes: calls and errors (status >= 400)",
                    (
                        Query(
                            sql=f"""
SELECT method, route, sum(requests) AS calls, sum(errors) AS errors,
       round(100.0 * sum(errors) / nullif(sum(requests), 0), 1) AS "error %"
FROM usage_route_day
WHERE {DAYS} AND app_id IN ($app)
GROUP BY 1, 2
ORDER BY calls DESC
LIMIT 50
""",
                            fmt="table",
                        ),
                    ),
                    kind="table",
                    width=WIDTH,
                ),
            ),
        ),
    ),
)

OVERVIEW = Dashboard(
    uid="connected-apps",
    title="Connected Apps",
    description="The whole system at a glance; the other dashboards go into each part.",
    rows=(
        (
            "Health",
            (
                Panel("Parts up", (Query("up", "{{job}}"),), kind="stat", width=WIDTH, height=4),
                Panel(
                    "Gateway calls per second by status",
                    (Query(rate("capps_gateway_requests_total", "status"), "{{status}}"),),
                    unit="reqps",
                ),
                Panel(
                    "Gateway p99 latency",
                    (Query(p(0.99, "capps_gateway_request_duration_seconds"), "p99"),),
                    unit="s",
                ),
                Panel(
                    "Usage events: produced, counted, lag",
                    (
                        Query(rate("capps_gateway_events_sent_total", window="5m"), "produced"),
                        Query(
                            rate(
                                'capps_aggregator_events_counted_total{sink="postgres"}',
                                window="5m",
                            ),
                            "counted",
                        ),
                        Query("sum(capps_aggregator_lag_records)", "lag (records)"),
                    ),
                ),
                Panel(
                    "Tokens issued and refused",
                    (
                        Query(rate("capps_registry_tokens_issued_total"), "issued"),
                        Query(failures("capps_registry_tokens_refused_total"), "refused"),
                    ),
                    unit="reqps",
                ),
            ),
        ),
    ),
)

DASHBOARDS = {
    "connected-apps.json": OVERVIEW,
    "gateway.json": GATEWAY,
    "aggregator.json": AGGREGATOR,
    "registry.json": REGISTRY,
    "usage.json": USAGE,
}


def render(board: Dashboard) -> str:
    """The JSON text written for one dashboard (stable, so diffs stay readable)."""
    return json.dumps(dashboard_json(board), indent=2) + "\n"


def main() -> int:
    """Rewrite every dashboard file; print what changed."""
    for name, board in DASHBOARDS.items():
        path = OUT / name
        text = render(board)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
