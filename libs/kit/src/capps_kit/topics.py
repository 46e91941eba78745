"""Command line that creates the design's Kafka topics idempotently: `python -m capps_kit.topics`.

`make up` runs it as Kafka's health check: it succeeds only when a real client got through to
the broker and every topic of `capps_events.TOPICS` exists.
"""

import argparse
import asyncio
import os
import sys

from capps_events import TOPICS, TopicSpec
from capps_kit.kafka import ensure_topics, make_admin
from capps_kit.kafka_security import KafkaSecurity
from capps_kit.settings import KafkaSettings

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def describe(specs: tuple[TopicSpec, ...], created: list[str]) -> list[str]:
    """One line per topic saying whether this run created it or found it already there."""
    lines = []
    for spec in specs:
        verb = "created" if spec.name in created else "present"
        configs = ",".join(f"{key}={value}" for key, value in sorted(spec.configs.items()))
        lines.append(f"{verb:8} {spec.name} partitions={spec.partitions} {configs}".rstrip())
    return lines


async def _missing_after(
    bootstrap_servers: str, specs: tuple[TopicSpec, ...], security: KafkaSecurity
) -> list[str]:
    # Topic creation is asynchronous on the controller; list again so success means "usable".
    admin = make_admin(bootstrap_servers, "capps-topics", security)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [spec.name for spec in specs if spec.name not in existing]


async def run(bootstrap_servers: str, seconds: float, security: KafkaSecurity) -> list[str]:
    """Create the missing topics and check they all exist within `seconds`; return the report."""
    async with asyncio.timeout(seconds):
        created = await ensure_topics(bootstrap_servers, TOPICS, security=security)
        missing = await _missing_after(bootstrap_servers, TOPICS, security)
        while missing:
            await asyncio.sleep(0.2)
            missing = await _missing_after(bootstrap_servers, TOPICS, security)
    return describe(TOPICS, created)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, create the topics, print what was done; exit 1 when Kafka is not there."""
    parser = argparse.ArgumentParser(prog="python -m capps_kit.topics", description=__doc__)
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
        help="host:port list (default: $KAFKA_BOOTSTRAP_SERVERS or %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="give up after this many seconds"
    )
    args = parser.parse_args(argv)
    # Credentials come from the environment like every service's (KAFKA_SECURITY_PROTOCOL...).
    security = KafkaSettings().kafka_security
    try:
        lines = asyncio.run(run(args.bootstrap_servers, args.timeout, security))
    except TimeoutError:
        sys.stderr.write(f"kafka at {args.bootstrap_servers}: no answer in {args.timeout:g}s\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - any client failure means "not usable yet", said once
        sys.stderr.write(f"kafka at {args.bootstrap_servers}: {type(exc).__name__}: {exc}\n")
        return 1
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
