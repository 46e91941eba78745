"""`make bench`: measure the running stack side by side with a baseline, print, write JSON.

Scenarios run back to back in one invocation so they share the machine's current noise:
- upstream direct: wrk straight at the demo API (the baseline the gateway is compared with);
- through gateway: the same call with a token, through validation, proxying and one event;
- call -> count: one call, then poll the registry until the app's count shows it.
"""

import argparse
import json
import statistics
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.stack import StackUrls, app_stats, create_load_app
from bench.wrk import LoadResult, run_wrk

RESULTS_DIR = Path(__file__).with_name("results")
COUNT_TIMEOUT_S = 120.0


def _progress(message: str) -> None:
    print(f"  .. {message}", flush=True)


def _bar(value: float, top: float, width: int = 28) -> str:
    return "#" * max(1, round(width * value / top)) if top else ""


def _wait_for_count(urls: StackUrls, admin: str, app_id: str, at_least: int) -> tuple[int, float]:
    """Poll until the registry shows at least `at_least` requests; (count, seconds waited)."""
    started = time.monotonic()
    while True:
        count = int(app_stats(urls.registry, admin, app_id)["requests_24h"])
        waited = time.monotonic() - started
        if count >= at_least or waited > COUNT_TIMEOUT_S:
            return count, waited
        time.sleep(0.05)


def _call_to_count_ms(
    urls: StackUrls, app_token: str, admin: str, app_id: str, samples: int
) -> list[float]:
    """Time from one call's response to its count in the registry, `samples` times."""
    latencies = []
    count = int(app_stats(urls.registry, admin, app_id)["requests_24h"])
    for _ in range(samples):
        requests.get(
            f"{urls.gateway}/api/alerts",
            headers={"Authorization": f"Bearer {app_token}"},
            timeout=10,
        ).raise_for_status()
        sent = time.monotonic()
        count, _waited = _wait_for_count(urls, admin, app_id, count + 1)
        latencies.append((time.monotonic() - sent) * 1000)
    return latencies


def main() -> None:
    """Run every scenario and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--samples", type=int, default=20, help="call -> count samples")
    args = parser.parse_args()
    urls = StackUrls.from_env()

    print(f"bench: {args.seconds}s per load run, {args.connections} connections", flush=True)
    _progress("creating a tenant and a load-test app")
    app_id, app_token, admin = create_load_app(urls.registry)

    _progress(f"upstream direct: wrk -> {urls.upstream}/api/alerts")
    direct = run_wrk(f"{urls.upstream}/api/alerts", args.seconds, args.connections)
    _progress(f"through gateway: wrk -> {urls.gateway}/api/alerts")
    gateway = run_wrk(
        f"{urls.gateway}/api/alerts",
        args.seconds,
        args.connections,
        headers={"Authorization": f"Bearer {app_token}"},
    )
    _progress(f"waiting for the registry to count {gateway.requests:,} calls")
    counted, drain_s = _wait_for_count(urls, admin, app_id, gateway.requests)
    _progress(f"call -> count latency, {args.samples} samples")
    to_count = _call_to_count_ms(urls, app_token, admin, app_id, args.samples)

    _report(
        args, direct=direct, gateway=gateway, counted=counted, drain_s=drain_s, to_count=to_count
    )


def _report(
    args: argparse.Namespace,
    *,
    direct: LoadResult,
    gateway: LoadResult,
    counted: int,
    drain_s: float,
    to_count: list[float],
) -> None:
    top = max(direct.per_second, gateway.per_second)
    rows = [("upstream direct (baseline)", direct), ("through gateway", gateway)]
    print()
    print(f"{'scenario':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}  chart")
    for name, result in rows:
        print(
            f"{name:<28} {result.per_second:>9,.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f}"
            f" {result.non_2xx:>8}  {_bar(result.per_second, top)}"
        )
    ratio = gateway.per_second / direct.per_second if direct.per_second else 0.0
    p50, p95 = statistics.median(to_count), statistics.quantiles(to_count, n=20)[18]
    print(f"\ngateway / baseline throughput: {ratio:.2f}")
    print(
        f"counted {counted:,} of the {gateway.requests:,} calls wrk saw answered"
        f" (drained {drain_s:.2f}s after the load)"
    )
    print(
        f"call -> count in registry: p50 {p50:.0f} ms, p95 {p95:.0f} ms ({len(to_count)} samples)"
    )

    summary: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": vars(args),
        "upstream_direct": asdict(direct) | {"per_second": direct.per_second},
        "through_gateway": asdict(gateway) | {"per_second": gateway.per_second},
        "gateway_to_baseline_ratio": ratio,
        "counted_after_load": counted,
        "drain_seconds": drain_s,
        "call_to_count_ms": {"p50": p50, "p95": p95, "samples": to_count},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"e2e-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
