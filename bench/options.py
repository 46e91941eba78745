"""The command line of `python -m bench`: which scenario groups run, and how big each is."""

import argparse
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

GROUPS = {
    "gateway": (
        "wrk at the demo API three ways, interleaved round by round: upstream direct"
        " (baseline), nginx proxy (reference, started by the bench) and through gateway;"
        " then waits until the registry counts every call the gateway answered"
    ),
    "count": (
        "call -> count latency: one call through the gateway, then poll the registry"
        " until its count shows it (--samples times)"
    ),
    "propagation": (
        "admin change -> enforced: revoke or grant the load app's permission in the"
        " registry, then poll the gateway until it answers 403 or 200 again (--samples times)"
    ),
    "edge": (
        "one gateway process (100,000 apps in view, rate limit on) against one nginx worker,"
        " both proxying to the same static 7.6 KB JSON; req/s, p50/p99, CPU µs per call,"
        " RSS, and the rate limiter's cost per check"
    ),
    "tracing": (
        "one gateway process with tracing off, on at 1/10 sampled and on for every call,"
        " exporting to a real OpenTelemetry Collector; req/s, p99 and CPU µs per call"
    ),
    "registry": (
        "tokens/s (client_secret_basic) beside GET /healthz, and GET /v1/apps p50/p95 for a"
        " tenant with 1,000 apps with usage beside GET /v1/permissions"
    ),
    "issuers": (
        "token checks/s in process: a registry token with external issuers off and on, an"
        " external issuer's token cached and checked from scratch (RS256)"
    ),
    "aggregator": (
        "events/s of the aggregator worker and of its writer alone, beside the ceiling"
        " (getmany + decode + in-memory count, no writes) on the same --events events,"
        " on a unique topic, database and consumer group removed afterwards"
    ),
    "page": (
        "server-side render time of the Connected applications page for a seeded tenant of"
        " 1,000 apps with usage, beside the admin API's JSON list of the same apps"
    ),
}

EPILOG = (
    "scenario groups (--only):\n"
    + "\n".join(
        textwrap.fill(text, 92, initial_indent=f"  {name:<11} ", subsequent_indent=" " * 14)
        for name, text in GROUPS.items()
    )
    + """

output: a table on stdout, bench/results/run-<UTC time>.json (all figures, machine facts:
nproc, load average before/after, git commit), bench/results/run-<UTC time>.png and
bench/results/history.png redrawn from every JSON result.

examples:
  make bench
  make bench BENCH_ARGS="--only gateway --seconds 10 --rounds 5"
  uv run python -m bench --only aggregator --events 200000   (with .local/stack.env exported)
"""
)


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What one run measures."""

    only: tuple[str, ...]
    seconds: int
    rounds: int
    connections: int
    samples: int
    events: int
    apps: int


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type accepting whole numbers from `low` to `high`: load stays bounded."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def scenario_groups(text: str) -> tuple[str, ...]:
    """`gateway,aggregator` -> the named groups in their run order; refuses unknown names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(GROUPS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario group {', '.join(unknown) or repr(text)};"
            f" choose from {', '.join(GROUPS)}"
        )
    return tuple(group for group in GROUPS if group in names)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with every option's bounds and default in its help."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Measure the running local stack side by side with baselines in one run"
            " (the machine is shared and noisy), print a table, write JSON and charts."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        type=scenario_groups,
        default=tuple(GROUPS),
        metavar="GROUP[,GROUP]",
        help=f"scenario groups to run (default: all: {','.join(GROUPS)})",
    )
    parser.add_argument(
        "--seconds", type=bounded_int(1, 120), default=5, help="length of one wrk run, 1..120 (5)"
    )
    parser.add_argument(
        "--rounds",
        type=bounded_int(1, 20),
        default=3,
        help="wrk rounds per HTTP scenario, interleaved; the table shows the median, 1..20 (3)",
    )
    parser.add_argument(
        "--connections",
        type=bounded_int(1, 1024),
        default=32,
        help="concurrent keep-alive connections of wrk, 1..1024 (32)",
    )
    parser.add_argument(
        "--samples",
        type=bounded_int(2, 1000),
        default=20,
        help="call -> count and change -> enforced samples (20)",
    )
    parser.add_argument(
        "--events",
        type=bounded_int(20_000, 2_000_000),
        default=100_000,
        help="events for the aggregator scenarios, 20,000..2,000,000 (100,000)",
    )
    parser.add_argument(
        "--apps", type=bounded_int(1, 10_000), default=100, help="apps the events spread over (100)"
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> BenchOptions:
    """Parse the command line; argparse exits with a message naming a bad option."""
    args = build_parser().parse_args(argv)
    return BenchOptions(
        only=args.only,
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        samples=args.samples,
        events=args.events,
        apps=args.apps,
    )
