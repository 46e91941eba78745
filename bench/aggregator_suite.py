"""The `aggregator` group of `make bench`: every aggregator figure, each beside its target.

In order: throughput beside the read ceiling (`bench.aggregator`), memory over a 2 M-event
backlog (`bench.aggregator_backlog`), Redis bytes per app-minute (`bench.aggregator_redis`),
series reads at 10,000 apps (`bench.aggregator_series`), and freshness at half the worker's
peak measured just before (`bench.aggregator_freshness`). With BENCH_AGGREGATOR_PARTS=series
in the environment, only the series reads (PostgreSQL is all they need).
"""

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.aggregator import Servers, measure_aggregator
from bench.aggregator_backlog import BACKLOG_EVENTS, measure_backlog
from bench.aggregator_freshness import measure_freshness
from bench.aggregator_redis import measure_redis_bytes
from bench.aggregator_series import measure_series
from bench.results import rate_entry, target

# Producing, reading and the worker's start, measured here: about 40 µs per event plus 20 s;
# the backlog ~130 µs per event; Redis, series (seed reused) and freshness about 3 minutes.
FIXED_S = 20 + BACKLOG_EVENTS * 130e-6 + 180


@dataclass(frozen=True, slots=True)
class AggregatorGroup:
    """Table rows and JSON figures of the group."""

    scenarios: dict[str, dict[str, Any]]
    extra: dict[str, Any]


def estimate_s(events: int) -> float:
    """Seconds the group takes, roughly (a first series seed adds about 15 minutes)."""
    return FIXED_S + events * 40e-6


def measure_aggregator_group(events: int, apps: int, workdir: Path) -> AggregatorGroup:
    """Run every aggregator measurement; the table's rows and the JSON's figures."""
    servers = Servers.from_env()
    if os.environ.get("BENCH_AGGREGATOR_PARTS") == "series":
        series = asyncio.run(measure_series(servers.database_url))
        return AggregatorGroup(
            scenarios={}, extra={"aggregator": series, "targets": _series(series)}
        )
    measured = asyncio.run(measure_aggregator(servers, events, apps, workdir))
    backlog = asyncio.run(measure_backlog(servers, workdir))
    redis_bytes = asyncio.run(measure_redis_bytes(servers, workdir))
    series = asyncio.run(measure_series(servers.database_url))
    peak = max(measured.worker_per_second, backlog.worker_per_second)
    freshness = measure_freshness(peak)
    figures = {
        "events": measured.events,
        "apps": measured.apps,
        "produce_seconds": measured.produce_seconds,
        **measured.extra(),
        **backlog.extra(),
        **redis_bytes,
        **series,
        **freshness,
    }
    targets = [
        target("worker / read ceiling", measured.extra()["worker_to_ceiling"], "x", 0.8, "min"),
        target(
            f"worker RSS peak, {backlog.events:,}-event backlog",
            backlog.peak_rss_mb,
            "MB",
            300,
            "max",
        ),
        target(
            f"freshness p99 at {freshness['freshness_rate_per_second']:,.0f} calls/s"
            f" ({freshness['freshness_rate_bound']})",
            freshness["freshness_p99_ms"],
            "ms",
            250,
            "max",
        ),
        *_series(series),
        target(
            "Redis bytes / app-minute, every minute",
            redis_bytes["redis_bytes_per_app_minute_dense"],
            "B",
            None,
        ),
        target(
            "Redis bytes / app-minute, 1 minute in 10",
            redis_bytes["redis_bytes_per_app_minute_sparse"],
            "B",
            None,
        ),
    ]
    return AggregatorGroup(
        scenarios={
            "aggregator_ceiling": rate_entry("aggregator_ceiling", [measured.ceiling_per_second]),
            "aggregator_worker": rate_entry("aggregator_worker", [measured.worker_per_second]),
            "aggregator_writer": rate_entry("aggregator_writer", [measured.writer_per_second]),
        },
        extra={"aggregator": figures, "targets": targets},
    )


def _series(series: dict[str, Any]) -> list[dict[str, Any]]:
    """The series targets, each beside its references from the same loop."""
    return [
        target(
            f"24 h minute series p99 in PostgreSQL ({series['series_minute_rows'] / 1e6:.0f} M"
            f" rows, {series['series_apps']:,} apps)",
            series["series_minute_24h_server_p99_ms"],
            "ms",
            10,
            "max",
        ),
        target(
            "24 h minute series p99, round trip + decode",
            series["series_minute_24h_p99_ms"],
            "ms",
            10,
            "max",
        ),
        target("30 day series p99 in PostgreSQL", series["series_day_30d_server_p99_ms"], "ms", 10),
        target("30 day series p99, round trip + decode", series["series_day_30d_p99_ms"], "ms", 10),
        target(
            "  ref: 24 h series as before (timestamptz minute), round trip p99",
            series["series_minute_24h_before_p99_ms"],
            "ms",
            None,
        ),
        target(
            "  ref: 24 h series as per-column arrays, round trip p99",
            series["series_minute_24h_arrays_p99_ms"],
            "ms",
            None,
        ),
        target(
            "  ref: 24 h series as 1,440 UsagePoints (read_series) p99",
            series["series_minute_24h_read_series_p99_ms"],
            "ms",
            None,
        ),
        target(
            "  ref: 24 h series from the heap, in PostgreSQL p99",
            series["series_minute_24h_heap_server_p99_ms"],
            "ms",
            None,
        ),
        target("  ref: SELECT 1 round trip p99", series["series_select_1_p99_ms"], "ms", None),
        *(
            target(f"  ref: client CPU per 24 h series, {name}", series[key], "ms", None)
            for name, key in (
                ("now", "series_minute_24h_client_cpu_ms"),
                ("before", "series_minute_24h_before_client_cpu_ms"),
                ("arrays", "series_minute_24h_arrays_client_cpu_ms"),
                ("read_series", "series_minute_24h_read_series_client_cpu_ms"),
            )
        ),
    ]
