"""`make bench`: measure the running stack side by side with baselines, print, write JSON, draw.

Every target runs in the same invocation as its baseline, because the machine is shared and
noisy and only figures taken minutes apart on it compare:
- gateway: wrk at upstream direct (baseline), nginx proxy (reference) and through gateway,
  interleaved and rotated round by round; then the registry's count of the gateway's calls;
- count: one call through the gateway, then poll the registry until it counts it;
- propagation: an admin's permission change, then poll the gateway until it enforces it;
- aggregator: worker and writer-alone events/s beside the consume + decode ceiling, memory
  over a 2 M backlog, Redis bytes, series reads at 10,000 apps, freshness (aggregator_suite).
`python -m bench --help` lists the options.
"""

import asyncio
import json
import os
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.aggregator_suite import estimate_s as aggregator_estimate_s
from bench.aggregator_suite import measure_aggregator_group
from bench.charts import draw_history, draw_run
from bench.gateway import measure_edge, print_edge
from bench.issuers import measure_token_checks
from bench.machine import ROOT, load_average, machine_facts
from bench.nginx import nginx_proxy, nginx_version
from bench.options import BenchOptions, parse_options
from bench.page import measure_page, print_summary, summary
from bench.progress import say, ticking
from bench.registry import RegistryTarget, measure_registry, report_registry
from bench.results import (
    history,
    http_entry,
    percentile,
    render_table,
    run_id,
    shape_run,
)
from bench.stack import (
    StackUrls,
    call_to_count_ms,
    change_to_enforced_ms,
    create_load_app,
    wait_for_count,
)
from bench.tracing import measure_tracing
from bench.wrk import LoadResult, run_wrk, wrk_version

RESULTS_DIR = Path(__file__).with_name("results")
PROBE_PATH = "/api/alerts"


def _local_dir() -> Path:
    return ROOT / os.environ.get("CAPPS_LOCAL_DIR", ".local")


def _http_scenarios(
    options: BenchOptions, urls: StackUrls, app_token: str
) -> dict[str, list[LoadResult]]:
    """wrk at the three targets, one run each per round, in a rotating order.

    Rotating spreads a slow minute of the shared machine over all three instead of one.
    """
    rounds: dict[str, list[LoadResult]] = {
        "upstream_direct": [],
        "nginx_proxy": [],
        "through_gateway": [],
    }
    with nginx_proxy(urls.upstream, _local_dir() / "bench" / "nginx", PROBE_PATH) as nginx:
        say(f"nginx proxy (reference) listening at {nginx}, 1 worker, keep-alive upstream pool")
        targets = [
            ("upstream_direct", f"{urls.upstream}{PROBE_PATH}", {}),
            ("nginx_proxy", f"{nginx}{PROBE_PATH}", {}),
            (
                "through_gateway",
                f"{urls.gateway}{PROBE_PATH}",
                {"Authorization": f"Bearer {app_token}"},
            ),
        ]
        for number in range(options.rounds):
            shift = number % len(targets)
            for key, url, headers in targets[shift:] + targets[:shift]:
                with ticking(
                    f"round {number + 1}/{options.rounds}: {key.replace('_', ' ')}: wrk -> {url}",
                    expected_s=options.seconds,
                ):
                    result = run_wrk(url, options.seconds, options.connections, headers)
                rounds[key].append(result)
                say(f"{result.ok_per_second:,.0f} req/s, {result.non_2xx} non-2xx")
    return rounds


def _estimate_s(options: BenchOptions) -> float:
    estimate = 0.0
    if "gateway" in options.only:
        estimate += 3 * options.rounds * options.seconds + 5
    if "edge" in options.only:
        # Six targets at full speed, then four paced at half the gateway's.
        estimate += 10 * options.rounds * options.seconds + 60
    if "tracing" in options.only:
        estimate += 3 * options.rounds * options.seconds + 30
    if "count" in options.only:
        estimate += options.samples * 0.2
    if "propagation" in options.only:
        estimate += options.samples * 0.3
    if "aggregator" in options.only:
        estimate += aggregator_estimate_s(options.events)
    return estimate


def run(options: BenchOptions) -> dict[str, Any]:
    """Run the selected groups; return the run's document."""
    started = datetime.now(UTC)
    machine = machine_facts() | {"load_before": load_average()}
    print(
        f"bench {run_id(started)}: {', '.join(options.only)}; {machine['nproc']} CPUs, load"
        f" {machine['load_before'][0]:.2f}; about {_estimate_s(options):.0f}s",
        flush=True,
    )
    scenarios: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}
    tools: dict[str, str] = {}
    if {"gateway", "count", "propagation", "edge"} & set(options.only):
        urls = StackUrls.from_env()
        say("creating a tenant and a load-test app in the registry")
        app_id, app_token, admin = create_load_app(urls.registry)
        if "gateway" in options.only:
            tools |= {"wrk": wrk_version(), "nginx": nginx_version()}
            rounds = _http_scenarios(options, urls, app_token)
            scenarios |= {key: http_entry(key, results) for key, results in rounds.items()}
            answered = sum(result.requests for result in rounds["through_gateway"])
            with ticking(f"waiting for the registry to count {answered:,} gateway calls"):
                counted, drain_s = wait_for_count(urls.registry, admin, app_id, answered)
            extra["counted_after_load"] = {
                "answered_by_wrk": answered,
                "counted_by_registry": counted,
                "drain_seconds": drain_s,
                # wrk stops with up to `connections` calls in flight per run; the gateway
                # answers and counts them, wrk does not report them.
                "in_flight_allowance": options.connections * options.rounds,
            }
        if "edge" in options.only:
            edge = measure_edge(
                seconds=options.seconds,
                rounds=options.rounds,
                connections=options.connections,
                registry=urls.registry,
                token=app_token,
                workdir=_local_dir() / "bench" / "edge",
            )
            scenarios |= {key: http_entry(key, runs) for key, runs in edge.rounds.items()}
            extra["edge"] = {
                "cpu_us_per_call": edge.cpu_us_per_call,
                "runqueue_wait_share": edge.runqueue_share,
                "half_rate": edge.half_rate,
                "gateway_rss_mb_100k_apps": edge.gateway_rss_mb,
                "gateway_compiled": edge.gateway_compiled,
                "ratelimiter": edge.limiter,
                "profile_shares": edge.profile,
            }
        if "count" in options.only:
            with ticking(f"call -> count latency, {options.samples} samples"):
                samples = call_to_count_ms(urls, app_token, admin, app_id, options.samples)
            extra["call_to_count_ms"] = {
                "p50": statistics.median(samples),
                "p95": percentile(samples, 95),
                "samples": samples,
            }
        if "propagation" in options.only:
            with ticking(f"admin change -> enforced at the gateway, {options.samples} samples"):
                changes = change_to_enforced_ms(urls, app_token, admin, app_id, options.samples)
            extra["change_to_enforced_ms"] = {
                "p50": statistics.median(changes),
                "p95": percentile(changes, 95),
                "samples": changes,
            }
    if "tracing" in options.only:
        scenarios |= measure_tracing(StackUrls.from_env(), options, _local_dir() / "bench")
    if "registry" in options.only:
        extra["registry"] = measure_registry(
            RegistryTarget.from_env(), options.seconds, options.connections
        )
    if "issuers" in options.only:
        scenarios |= measure_token_checks()
    if "aggregator" in options.only:
        group = measure_aggregator_group(options.events, options.apps, _local_dir() / "bench")
        scenarios |= group.scenarios
        extra |= group.extra
    if "page" in options.only:
        extra["page_render_ms"] = summary(
            asyncio.run(measure_page(max(options.samples, 40), _local_dir() / "secrets.env"))
        )
    machine |= {"load_after": load_average(), "tools": tools}
    finished = datetime.now(UTC)
    extra["duration_seconds"] = (finished - started).total_seconds()
    return shape_run(
        run=run_id(started),
        at=started,
        settings={
            "only": list(options.only),
            "seconds": options.seconds,
            "rounds": options.rounds,
            "connections": options.connections,
            "samples": options.samples,
            "events": options.events,
            "apps": options.apps,
        },
        machine=machine,
        scenarios=scenarios,
        extra=extra,
    )


def report(document: dict[str, Any]) -> None:
    """Print the table and the extra figures; write the JSON and the charts."""
    print()
    print(render_table(document))
    if document.get("edge"):
        print_edge(document["edge"])
    counted = document.get("counted_after_load")
    if counted:
        print(
            f"\nregistry counted {counted['counted_by_registry']:,} of the"
            f" {counted['answered_by_wrk']:,} gateway calls wrk saw answered"
            f" (+ up to {counted['in_flight_allowance']} in flight when wrk stopped);"
            f" drained {counted['drain_seconds']:.2f}s after the load"
        )
    latency = document.get("call_to_count_ms")
    if latency:
        print(
            f"call -> count in registry: p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms"
            f" ({len(latency['samples'])} samples)"
        )
    enforced = document.get("change_to_enforced_ms")
    if enforced:
        print(
            f"admin change -> enforced at the gateway: p50 {enforced['p50']:.0f} ms,"
            f" p95 {enforced['p95']:.0f} ms ({len(enforced['samples'])} samples)"
        )
    if document.get("registry"):
        report_registry(document["registry"])
    if "page_render_ms" in document:
        print_summary(document["page_render_ms"])
    machine = document["machine"]
    print(
        f"machine: {machine['nproc']} CPUs, load {machine['load_before'][0]:.2f} before,"
        f" {machine['load_after'][0]:.2f} after; commit {str(machine['git']['commit'])[:10]}"
        f"{' (dirty tree)' if machine['git']['dirty'] else ''}"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{document['run']}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    chart = RESULTS_DIR / f"{document['run']}.png"
    draw_run(document, chart)
    print(f"drew  {chart.relative_to(ROOT)}")
    documents = [(p.stem, json.loads(p.read_text())) for p in sorted(RESULTS_DIR.glob("*.json"))]
    draw_history(history(documents), RESULTS_DIR / "history.png")
    print(f"drew  {(RESULTS_DIR / 'history.png').relative_to(ROOT)} ({len(documents)} runs)")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run, report."""
    options = parse_options(argv)
    try:
        document = run(options)
    except KeyboardInterrupt:
        sys.exit("bench interrupted: nothing written")
    report(document)


if __name__ == "__main__":
    main()
