"""Shape what a run measured into its JSON document, its table and the history over runs.

Pure functions only: the document is built once and the table, the charts and the history
all read it, so what is printed, drawn and committed are the same figures.
"""

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from bench.wrk import LoadResult

SCHEMA = 2
Role = Literal["baseline", "reference", "target"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row of the table: what was measured, in which unit, compared with what."""

    key: str
    name: str
    group: str
    unit: str
    role: Role


SCENARIOS = (
    Scenario("upstream_direct", "upstream direct", "http", "req/s", "baseline"),
    Scenario("nginx_proxy", "nginx proxy (reference)", "http", "req/s", "reference"),
    Scenario("through_gateway", "through gateway", "http", "req/s", "target"),
    Scenario("static_nginx_proxy", "static: nginx worker", "edge", "req/s", "reference"),
    Scenario("static_gateway", "static: gateway process", "edge", "req/s", "target"),
    Scenario(
        "static_gateway_interpreted", "static: gateway, not compiled", "edge", "req/s", "reference"
    ),
    # bench/edge_apps.py: the gateway's stages served alone, to split its cost per call
    Scenario("static_serve", "static: serving alone, gateway edge", "edge", "req/s", "reference"),
    Scenario(
        "static_serve_uvicorn", "static: serving alone, uvicorn", "edge", "req/s", "reference"
    ),
    Scenario(
        "static_serve_granian", "static: serving alone, granian", "edge", "req/s", "reference"
    ),
    Scenario("static_relay", "static: serving + upstream client", "edge", "req/s", "reference"),
    Scenario(
        "static_relay_aiohttp", "static: serving + aiohttp client", "edge", "req/s", "reference"
    ),
    Scenario(
        "static_direct_half", "static: upstream direct, paced", "half rate", "req/s", "baseline"
    ),
    Scenario("static_nginx_half", "static: nginx proxy, paced", "half rate", "req/s", "reference"),
    Scenario(
        "static_control_half", "static: CPU-matched relay, paced", "half rate", "req/s", "reference"
    ),
    Scenario("static_gateway_half", "static: gateway, paced", "half rate", "req/s", "target"),
    Scenario(
        "static_direct_nginx_half",
        "static: upstream direct, nginx's pace",
        "half rate",
        "req/s",
        "baseline",
    ),
    Scenario(
        "static_nginx_own_half",
        "static: nginx at half its own peak",
        "half rate",
        "req/s",
        "reference",
    ),
    Scenario(
        "aggregator_ceiling",
        "aggregator ceiling: getmany+decode",
        "aggregator",
        "events/s",
        "baseline",
    ),
    Scenario(
        "aggregator_worker", "aggregator worker (events/s)", "aggregator", "events/s", "target"
    ),
    Scenario("aggregator_writer", "aggregator writer alone", "aggregator", "events/s", "target"),
    # bench/issuers.py: token checks in process, external issuers off and on
    Scenario("token_registry", "registry token, cached", "token", "checks/s", "baseline"),
    Scenario("token_registry_routed", "registry token, issuers on", "token", "checks/s", "target"),
    Scenario("token_external_cached", "external token, cached", "token", "checks/s", "target"),
    Scenario("token_external_first", "external token, 1st check", "token", "checks/s", "target"),
    # bench/tracing.py: one gateway process with tracing off and on
    Scenario("tracing_off", "gateway, tracing off", "tracing", "req/s", "baseline"),
    Scenario("tracing_sampled", "gateway, tracing 1/10 sampled", "tracing", "req/s", "target"),
    Scenario("tracing_all", "gateway, tracing every call", "tracing", "req/s", "target"),
)
BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}

# (key, label, numerator scenario, denominator scenario)
RATIOS = (
    (
        "routed_to_registry",
        "token check: issuers on / off",
        "token_registry_routed",
        "token_registry",
    ),
    (
        "gateway_to_direct",
        "through gateway / upstream direct",
        "through_gateway",
        "upstream_direct",
    ),
    ("nginx_to_direct", "nginx proxy / upstream direct", "nginx_proxy", "upstream_direct"),
    ("gateway_to_nginx", "through gateway / nginx proxy", "through_gateway", "nginx_proxy"),
    (
        "static_gateway_to_nginx",
        "gateway process / nginx worker (static upstream)",
        "static_gateway",
        "static_nginx_proxy",
    ),
    (
        "compiled_to_interpreted",
        "gateway compiled / not compiled",
        "static_gateway",
        "static_gateway_interpreted",
    ),
    ("tracing_sampled_to_off", "tracing 1/10 sampled / off", "tracing_sampled", "tracing_off"),
    ("tracing_all_to_off", "tracing every call / off", "tracing_all", "tracing_off"),
    ("worker_to_ceiling", "aggregator worker / ceiling", "aggregator_worker", "aggregator_ceiling"),
    ("writer_to_ceiling", "writer alone / ceiling", "aggregator_writer", "aggregator_ceiling"),
    (
        "worker_to_writer",
        "aggregator worker / writer alone",
        "aggregator_worker",
        "aggregator_writer",
    ),
)


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of a scenario's rounds and their range."""

    median: float
    low: float
    high: float


def spread(values: Sequence[float]) -> Spread:
    """Median, min and max; the median because one noisy round must not move the figure."""
    if not values:
        raise ValueError("no values to summarise")
    return Spread(statistics.median(values), min(values), max(values))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def run_id(moment: datetime) -> str:
    """The name of a run's files: `run-20261127T035512Z`."""
    return f"run-{moment:%Y%m%dT%H%M%SZ}"


def percentile(values: Sequence[float], pct: int) -> float:
    """The `pct`th percentile (inclusive method: stays within the samples)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def http_entry(scenario_key: str, rounds: Sequence[LoadResult]) -> dict[str, Any]:
    """A wrk scenario: 2xx req/s per round, with latency and errors beside."""
    rates = [result.ok_per_second for result in rounds]
    return _entry(scenario_key, rates) | {
        "p50_ms": statistics.median(result.p50_ms for result in rounds),
        "p99_ms": statistics.median(result.p99_ms for result in rounds),
        "requests": sum(result.requests for result in rounds),
        "non_2xx": sum(result.non_2xx for result in rounds),
        "socket_errors": sum(result.socket_errors for result in rounds),
        "runs": [asdict(result) | {"per_second": result.per_second} for result in rounds],
    }


def rate_entry(scenario_key: str, rates: Sequence[float]) -> dict[str, Any]:
    """A scenario measured as plain rates (events/s)."""
    return _entry(scenario_key, rates)


def _entry(scenario_key: str, rates: Sequence[float]) -> dict[str, Any]:
    scenario = BY_KEY[scenario_key]
    summary = spread(rates)
    return {
        "name": scenario.name,
        "group": scenario.group,
        "unit": scenario.unit,
        "role": scenario.role,
        "median": summary.median,
        "min": summary.low,
        "max": summary.high,
        "rounds": list(rates),
    }


def target(
    figure: str, value: float, unit: str, bound: float | None, kind: str = "max"
) -> dict[str, Any]:
    """A figure beside its target: at most (`max`) or at least (`min`) `bound`; None: shown only."""
    met = None if bound is None else (value <= bound if kind == "max" else value >= bound)
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "target": bound,
        "kind": kind,
        "met": met,
    }


def render_targets(targets: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per figure: value, target and whether it was met."""
    width = max(len(str(row["figure"])) for row in targets)
    lines = [f"{'figure':<{width}} {'value':>10} {'unit':<4} {'target':>9}  met"]
    for row in targets:
        bound = row["target"]
        goal = "" if bound is None else f"{'<=' if row['kind'] == 'max' else '>='} {bound:g}"
        met = {True: "yes", False: "NO", None: ""}[row["met"]]
        lines.append(
            f"{row['figure']:<{width}} {row['value']:>10,.2f} {row['unit']:<4} {goal:>9}  {met}"
        )
    return lines


def ratios(scenarios: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Every ratio whose two scenarios ran, from their medians."""
    found = {}
    for key, _label, top, bottom in RATIOS:
        value = ratio(scenarios.get(top, {}).get("median"), scenarios.get(bottom, {}).get("median"))
        if value is not None:
            found[key] = value
    return found


def shape_run(
    *,
    run: str,
    at: datetime,
    settings: Mapping[str, Any],
    machine: Mapping[str, Any],
    scenarios: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The run's JSON document, scenarios in table order."""
    ordered = {s.key: dict(scenarios[s.key]) for s in SCENARIOS if s.key in scenarios}
    return {
        "schema": SCHEMA,
        "run": run,
        "at": at.isoformat(timespec="seconds"),
        "settings": dict(settings),
        "machine": dict(machine),
        "scenarios": ordered,
        "ratios": ratios(ordered),
        **extra,
    }


def _bar(value: float, top: float, width: int = 24) -> str:
    return "#" * max(1, round(width * value / top)) if top > 0 and value > 0 else ""


def _row_name(scenario: Scenario) -> str:
    return scenario.name + (" [baseline]" if scenario.role == "baseline" else "")


def render_table(document: Mapping[str, Any]) -> str:
    """The table a person reads at the end of a run, ratios and observations below it."""
    scenarios: Mapping[str, Mapping[str, Any]] = document["scenarios"]
    width = max([len(_row_name(s)) for s in SCENARIOS if s.key in scenarios] + [34])
    lines = [
        f"{'scenario':<{width}} {'median':>9} {'unit':<8} {'min..max':>17} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'non-2xx':>7}  chart"
    ]
    for group in dict.fromkeys(s.group for s in SCENARIOS):
        rows = [(s, scenarios[s.key]) for s in SCENARIOS if s.group == group and s.key in scenarios]
        if not rows:
            continue
        top = max(entry["max"] for _, entry in rows)
        for scenario, entry in rows:
            latency = (
                f"{entry['p50_ms']:>7.2f} {entry['p99_ms']:>7.2f} {entry['non_2xx']:>7}"
                if "p50_ms" in entry
                else f"{'':>7} {'':>7} {'':>7}"
            )
            span = f"{entry['min']:,.0f}..{entry['max']:,.0f}"
            lines.append(
                f"{_row_name(scenario):<{width}} {entry['median']:>9,.0f} {scenario.unit:<8}"
                f" {span:>17} {latency}  {_bar(entry['median'], top)}"
            )
    found = document.get("ratios", {})
    if found:
        lines.append("")
        lines.extend(
            f"{label:<{width}} {found[key]:>9.2f}" for key, label, _, _ in RATIOS if key in found
        )
    if document.get("targets"):
        lines.append("")
        lines.extend(render_targets(document["targets"]))
    notes = observations(document)
    if notes:
        lines.append("")
        lines.extend(f"note: {note}" for note in notes)
    return "\n".join(lines)


NOISY_SPREAD = 0.2
SATURATED = 0.9


def observations(document: Mapping[str, Any]) -> list[str]:
    """What a reader should know before trusting the figures of this run."""
    notes = []
    scenarios: Mapping[str, Mapping[str, Any]] = document["scenarios"]
    found: Mapping[str, float] = document.get("ratios", {})
    if found.get("nginx_to_direct", 0.0) >= SATURATED:
        notes.append(
            f"nginx reaches {found['nginx_to_direct']:.2f} of upstream direct: the demo API is"
            " the limit for both, so gateway/nginx is the gateway against a proxy whose own"
            " cost does not show here"
        )
    for key, entry in scenarios.items():
        if entry.get("non_2xx"):
            notes.append(
                f"{entry['name']}: {entry['non_2xx']:,} non-2xx answers, left out of its req/s"
            )
        if entry["median"] and (entry["max"] - entry["min"]) / entry["median"] > NOISY_SPREAD:
            notes.append(
                f"{BY_KEY[key].name}: rounds varied by"
                f" {(entry['max'] - entry['min']) / entry['median']:.0%} of the median"
            )
    machine = document.get("machine", {})
    nproc, before = machine.get("nproc"), machine.get("load_before")
    if nproc and before and before[0] > nproc / 2:
        notes.append(
            f"load average {before[0]:.2f} on {nproc} CPUs before the run: other work"
            " shared the machine; compare ratios, not absolute figures"
        )
    return notes


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One run's headline figures, for the history chart."""

    run: str
    at: str
    rates: dict[str, float]


def history_point(document: Mapping[str, Any], name: str) -> HistoryPoint | None:
    """The medians of one result document, current or first (schema 1) format."""
    if "at" not in document:
        return None
    if document.get("schema") == SCHEMA:
        rates = {key: float(entry["median"]) for key, entry in document["scenarios"].items()}
    else:
        # Schema 1 (bench/results/e2e-*.json): one wrk run per scenario, counting every status.
        rates = {
            key: float(document[key]["per_second"])
            for key in ("upstream_direct", "through_gateway")
            if key in document
        }
    return HistoryPoint(run=str(document.get("run", name)), at=str(document["at"]), rates=rates)


def history(documents: Iterable[tuple[str, Mapping[str, Any]]]) -> list[HistoryPoint]:
    """The points of every readable document, oldest first."""
    points = [history_point(document, name) for name, document in documents]
    return sorted((point for point in points if point is not None), key=lambda p: p.at)
