"""`--only tracing`: the gateway with tracing off beside tracing on, in the same run.

Three gateway processes (one worker each, same settings, the stack's Kafka, Redis and app
view) proxy to one static nginx upstream (7.6 KB JSON, as in `--only edge`), and wrk loads one
at a time, the order rotating round by round:
- tracing off: no OTLP endpoint, so no span is made (the default, and main's per-call path);
- tracing on, 1 in 10 new traces sampled (`parentbased_traceidratio`, the compose default);
- tracing on, every call sampled (`parentbased_always_on`, the SDK's default).
The traced ones export to a real OpenTelemetry Collector (deploy/otel-collector) writing to a
file, so the exporter's work is in the figures too. Besides req/s and p99: CPU µs per call of
each gateway process, and how many spans the collector received.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.gateway import (
    PATH,
    _claims,
    _cpu_seconds,
    _nginx,
    _nginx_config,
    _wait_http,
    static_body,
)
from bench.machine import ROOT
from bench.nginx import spare_port
from bench.options import BenchOptions
from bench.progress import say, ticking
from bench.results import http_entry
from bench.stack import StackUrls, create_load_app
from bench.wrk import LoadResult, run_wrk

# key -> the tracing settings of that gateway
VARIANTS: dict[str, dict[str, str]] = {
    "tracing_off": {},
    "tracing_sampled": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    "tracing_all": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}


def _start_gateway(
    key: str, variant: dict[str, str], *, workdir: Path, upstream: str, trust: dict[str, str]
) -> tuple[str, "subprocess.Popen[bytes]"]:
    """One gateway process of the comparison, answering calls; (its URL, the process)."""
    port, admin_port = spare_port(), spare_port()
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("OTEL_")},
        **trust,
        "GATEWAY_WORKERS": "1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADMIN_PORT": str(admin_port),
        "GATEWAY_UPSTREAM_URL": upstream,
        "GATEWAY_SPOOL_DIR": str(workdir / f"spool-{key}"),
        "INSTANCE_ID": f"bench-{key}-{uuid.uuid4().hex[:6]}",
        "LOG_LEVEL": "WARNING",
        **variant,
    }
    with (workdir / f"gateway-{key}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "capps_gateway"], env=env, stdout=log, stderr=log, cwd=ROOT
        )
    with ticking(f"gateway {key.replace('_', ' ')} starting"):
        _wait_http(f"http://127.0.0.1:{admin_port}/readyz")
    return f"http://127.0.0.1:{port}{PATH}", process


def _count_spans(path: Path) -> int:
    if not path.exists():
        return 0
    return path.read_text().count('"spanId"')


def measure_tracing(
    urls: StackUrls, options: BenchOptions, bench_dir: Path
) -> dict[str, dict[str, Any]]:
    """The three gateways side by side; their scenario entries (with CPU µs per call)."""
    seconds, rounds, connections = options.seconds, options.rounds, options.connections
    workdir = bench_dir / "tracing"
    _, token, _ = create_load_app(urls.registry)
    claims = _claims(token)
    static_dir = workdir / "static"
    static_dir.mkdir(parents=True, exist_ok=True)
    (static_dir / "alerts.json").write_bytes(static_body())
    static_port = spare_port()
    static_server = (
        f"server {{ listen 127.0.0.1:{static_port}; default_type application/json;"
        f" location = {PATH} {{ alias {static_dir}/alerts.json; }} }}"
    )
    results: dict[str, list[LoadResult]] = {key: [] for key in VARIANTS}
    cpu: dict[str, list[float]] = {key: [] for key in VARIANTS}
    auth = {"Authorization": f"Bearer {token}"}
    gateways: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    # The tests' collector (deploy/otel-collector, built once and cached) writing to a file.
    from tests.integration.tracing.collector import running_collector

    say("starting deploy/otel-collector (built with Go on first use: minutes)")
    with (
        _nginx(_nginx_config(static_dir, static_server), static_dir),
        running_collector(workdir) as collector,
    ):
        trust = {"REGISTRY_URL": urls.registry, "TOKEN_ISSUER": claims["iss"]}
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
        try:
            for key, variant in VARIANTS.items():
                gateways[key] = _start_gateway(
                    key,
                    {**traced, **variant} if variant else {},
                    workdir=workdir,
                    upstream=f"http://127.0.0.1:{static_port}",
                    trust=trust,
                )
                _wait_http(gateways[key][0], auth)
            keys = list(VARIANTS)
            for number in range(rounds):
                shift = number % len(keys)
                for key in keys[shift:] + keys[:shift]:
                    url, process = gateways[key]
                    before = _cpu_seconds([process.pid])
                    with ticking(
                        f"round {number + 1}/{rounds}: {key.replace('_', ' ')}", expected_s=seconds
                    ):
                        result = run_wrk(url, seconds, connections, auth)
                    used = _cpu_seconds([process.pid]) - before
                    results[key].append(result)
                    cpu[key].append(used / max(result.requests, 1) * 1e6)
                    say(
                        f"{result.ok_per_second:,.0f} req/s, p99 {result.p99_ms:.1f} ms, "
                        f"{cpu[key][-1]:.0f} CPU µs/call, {result.non_2xx} non-2xx"
                    )
        finally:
            for _, process in gateways.values():
                process.send_signal(signal.SIGTERM)
            for _, process in gateways.values():
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        # The traced gateways flushed their spans on the way out; the file settles shortly.
        time.sleep(1.0)
        spans = _count_spans(collector.output)
        collector.output.unlink(missing_ok=True)
    say(f"collector received {spans:,} spans")
    entries = {}
    for key, runs in results.items():
        per_call = sorted(cpu[key])[len(cpu[key]) // 2]
        entries[key] = http_entry(key, runs) | {"cpu_us_per_call": per_call}
    entries["tracing_all"]["spans_received_by_collector"] = spans
    return entries
