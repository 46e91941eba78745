"""The worker's memory while it catches up a backlog of BACKLOG_EVENTS events.

The events are produced to a scratch topic before the worker starts (whole batches per
partition, `bench.aggregator_produce`), then one `python -m capps_aggregator worker` counts
them into a scratch database and Redis database. Its resident set is sampled at every poll
of its progress (every 50 ms) and, at the end, the kernel's own high-water mark (VmHWM)
is read, so a peak between two samples is not missed.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.aggregator import Servers, produce, scratch, worker_rate
from bench.progress import say
from capps_kit.postgres import asyncpg_dsn

BACKLOG_EVENTS = 2_000_000
BACKLOG_APPS = 1_000


@dataclass(frozen=True, slots=True)
class BacklogResult:
    """The worker over a large backlog."""

    events: int
    produce_seconds: float
    worker_per_second: float
    peak_rss_mb: float
    rss_samples: int

    def extra(self) -> dict[str, Any]:
        """The figures for the run's JSON."""
        return {
            "backlog_events": self.events,
            "backlog_produce_seconds": self.produce_seconds,
            "backlog_worker_per_second": self.worker_per_second,
            "backlog_worker_peak_rss_mb": self.peak_rss_mb,
            "backlog_rss_samples": self.rss_samples,
        }


async def measure_backlog(
    servers: Servers, workdir: Path, events: int = BACKLOG_EVENTS
) -> BacklogResult:
    """Produce `events`, let one worker catch them up; its rate and peak resident memory."""
    async with scratch(servers) as made:
        produce_s = await produce(made, events, BACKLOG_APPS)
        say(f"backlog: {events:,} events waiting; starting the worker")
        run = await worker_rate(
            made.worker_env(),
            asyncpg_dsn(made.database_url),
            events,
            workdir / "aggregator-backlog-worker.log",
        )
    say(
        f"backlog: {events:,} events caught up at {run.per_second:,.0f}/s, worker RSS peak"
        f" {run.peak_rss_mb:.0f} MB ({len(run.rss_samples_mb)} samples + VmHWM)"
    )
    return BacklogResult(
        events=events,
        produce_seconds=produce_s,
        worker_per_second=run.per_second,
        peak_rss_mb=run.peak_rss_mb,
        rss_samples=len(run.rss_samples_mb),
    )
