"""The aggregator's throughput on the real servers, beside the ceiling its input allows.

One set of events goes to a unique topic, then three readers take it in turn:
- ceiling (baseline): raw aiokafka `getmany` + `capps_events.decode_request` + an in-memory
  count, no writes: the most the worker could do with this consumer setup on this machine;
- the whole worker (`python -m capps_aggregator worker`) against a unique database and group;
- the writer alone (`UsageBatchWriter`: PostgreSQL + Redis, no Kafka) on the same records.
Each rate is taken from the moment the first batch is done to the last event, so start-up
and group joining are left out the same way for all three. Everything the run creates (topic,
database, consumer groups, Redis keys and watermarks) is removed afterwards.
"""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import DeleteGroupsRequest

from bench.aggregator_produce import bench_event, produce_backlog
from bench.nginx import spare_port
from bench.progress import say, ticking
from bench.stack import require_loopback
from capps_aggregator.migrate import upgrade_head
from capps_aggregator.rollup import decode_batch
from capps_aggregator.runtime import AggregatorRuntime
from capps_aggregator.settings import AggregatorSettings
from capps_events import RequestEvent, TimeWindow, TopicSpec, decode_request
from capps_kit.kafka import ensure_topics, make_admin
from capps_kit.postgres import asyncpg_dsn
from capps_kit.redis import create_redis
from capps_usage.keys import OFFSETS_KEY
from tests.infra import kafka_security

PARTITIONS = 12
# The worker's defaults (AggregatorSettings): the ceiling and the writer use the same sizes.
BATCH_MAX = 10_000
BATCH_WITHIN_MS = 250
POLL_S = 0.05
USAGE_TABLES = "usage_minute, usage_day, usage_route_day, app_last_seen, usage_offsets"
# The bench counts into a Redis database of its own: a hot-store rebuild it might trigger
# (the marker missing there) then never touches the stack's counters in database 0.
BENCH_REDIS_DB = 12
Kept = list[tuple[int, ConsumerRecord[bytes, bytes]]]


@dataclass(frozen=True, slots=True)
class AggregatorResult:
    """Events per second of each reader over the same events."""

    events: int
    apps: int
    produce_seconds: float
    ceiling_per_second: float
    worker_per_second: float
    writer_per_second: float
    worker_peak_rss_mb: float

    def extra(self) -> dict[str, float]:
        """The figures beside the rates, for the run's JSON."""
        return {
            "worker_to_ceiling": self.worker_per_second / self.ceiling_per_second,
            "worker_peak_rss_mb": self.worker_peak_rss_mb,
        }


@dataclass(frozen=True, slots=True)
class Servers:
    """The shared servers the measurement runs against (from `.local/stack.env`)."""

    database_url: str
    redis_url: str
    kafka_bootstrap_servers: str

    @classmethod
    def from_env(cls) -> "Servers":
        """Read the URLs `make up` wrote; fail with a hint when the stack is not up."""
        try:
            return cls(
                database_url=require_loopback(os.environ["DATABASE_URL"]),
                redis_url=require_loopback(os.environ["REDIS_URL"]),
                kafka_bootstrap_servers=require_loopback(os.environ["KAFKA_BOOTSTRAP_SERVERS"]),
            )
        except KeyError as missing:
            raise SystemExit(
                f"{missing} is not set: run `make bench` (it runs `make up`)"
            ) from None


def rate_after_first(total: int, first_count: int, first_at: float, last_at: float) -> float:
    """Events/s between the first finished batch (`first_count` done at `first_at`) and the end.

    The first batch is excluded because its start hides group joining and start-up time.
    """
    span = last_at - first_at
    if span <= 0:
        return 0.0
    return (total - first_count) / span


def database_url_named(database_url: str, name: str) -> str:
    """`database_url` pointing at database `name` on the same server."""
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


@dataclass(frozen=True, slots=True)
class Scratch:
    """A unique topic, database, Redis database and consumer groups for one measurement."""

    run: str
    topic: str
    database_url: str
    redis_url: str
    bootstrap: str
    groups: tuple[str, str]

    def worker_env(self) -> dict[str, str]:
        """The environment of a worker counting this scratch topic into these stores."""
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "AGGREGATOR_TOPIC": self.topic,
            "AGGREGATOR_DLQ_TOPIC": self.topic + ".dlq",
            "AGGREGATOR_GROUP": self.groups[0],
            "LOG_LEVEL": "ERROR",
        }

    def app_ids(self, apps: int) -> list[str]:
        """`apps` app ids unique to this scratch run (its Redis keys are removed by prefix)."""
        return [f"bench-{self.run}-{index}" for index in range(apps)]


@asynccontextmanager
async def scratch(servers: Servers) -> AsyncIterator[Scratch]:
    """Create the scratch topic (PARTITIONS partitions) and migrated database; remove all after."""
    run = uuid.uuid4().hex[:8]
    name = f"capps_agg_bench_{run}"
    topic = f"capps-agg-bench-{run}"
    bootstrap = servers.kafka_bootstrap_servers
    made = Scratch(
        run=run,
        topic=topic,
        database_url=database_url_named(servers.database_url, name),
        redis_url=urlunsplit(urlsplit(servers.redis_url)._replace(path=f"/{BENCH_REDIS_DB}")),
        bootstrap=bootstrap,
        groups=(topic, f"{topic}-ceiling"),
    )
    admin_pg = await asyncpg.connect(asyncpg_dsn(servers.database_url))
    kafka_admin = make_admin(bootstrap, "capps-agg-bench", kafka_security())
    await kafka_admin.start()
    hot = create_redis(made.redis_url)
    try:
        say(f"aggregator: database {name}, topic {topic} ({PARTITIONS} partitions)")
        await admin_pg.execute(f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(upgrade_head, made.database_url)
        await ensure_topics(
            bootstrap,
            [TopicSpec(topic, PARTITIONS), TopicSpec(topic + ".dlq", 1)],
            security=kafka_security(),
        )
        yield made
    finally:
        await _drop_redis_keys(hot, run, topic)
        await hot.aclose()
        await kafka_admin.delete_topics([topic, topic + ".dlq"])
        await _delete_groups(bootstrap, kafka_admin, list(made.groups))
        await kafka_admin.close()
        await admin_pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_pg.close()
        say(f"aggregator: removed {topic}, its groups, {name} and the bench-{run}-* keys")


async def produce(
    made: Scratch,
    events: int,
    apps: int,
    event_of: Callable[[int], RequestEvent] | None = None,
) -> float:
    """Put `events` events on the scratch topic, with progress; the seconds it took.

    By default event i is `bench_event(i, ...)` over `apps` apps of this run.
    """
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done = count

    app_ids, now = made.app_ids(apps), datetime.now(UTC)
    with ticking(
        f"aggregator: producing {events:,} events over {apps:,} apps",
        status=lambda: f"{done:,}/{events:,}",
    ):
        return await produce_backlog(
            made.bootstrap,
            made.topic,
            PARTITIONS,
            events,
            event_of or (lambda index: bench_event(index, app_ids, now)),
            progress=advance,
        )


async def measure_aggregator(
    servers: Servers, events: int, apps: int, workdir: Path
) -> AggregatorResult:
    """Produce `events` to a unique topic and measure the three readers on them.

    The worker's log goes to `workdir`/aggregator-worker.log.
    """
    async with scratch(servers) as made:
        produce_s = await produce(made, events, apps)
        ceiling, records = await _ceiling_rate(made.bootstrap, made.topic, made.groups[1], events)
        worker = await worker_rate(
            made.worker_env(),
            asyncpg_dsn(made.database_url),
            events,
            workdir / "aggregator-worker.log",
        )
        # A clean slate, so the writer inserts rows as the worker did instead of updating them.
        hot = create_redis(made.redis_url)
        try:
            await _reset_stores(asyncpg_dsn(made.database_url), hot, made.run, made.topic)
        finally:
            await hot.aclose()
        writer = await _writer_rate(
            made.database_url, made.redis_url, made.bootstrap, made.topic, records
        )
    return AggregatorResult(
        events=events,
        apps=apps,
        produce_seconds=produce_s,
        ceiling_per_second=ceiling,
        worker_per_second=worker.per_second,
        writer_per_second=writer,
        worker_peak_rss_mb=worker.peak_rss_mb,
    )


async def _ceiling_rate(bootstrap: str, topic: str, group: str, total: int) -> tuple[float, Kept]:
    """getmany + decode + count, no writes; also hands the records on for the writer."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=BATCH_MAX,
        fetch_max_wait_ms=BATCH_WITHIN_MS,
        **kafka_security().client_options(),
    )
    counts: Counter[str] = Counter()
    kept: Kept = []
    seen = 0
    first: tuple[int, float] | None = None
    deadline = time.monotonic() + _time_limit_s(total)
    await consumer.start()
    try:
        with ticking("aggregator ceiling: getmany + decode + count", status=lambda: f"{seen:,}"):
            while seen < total:
                fetched = await consumer.getmany(timeout_ms=BATCH_WITHIN_MS, max_records=BATCH_MAX)
                for tp, batch in fetched.items():
                    for record in batch:
                        counts[decode_request(record.value, list(record.headers)).app_id] += 1
                    # References only: the writer gets these exact records after the timing.
                    kept.extend((tp.partition, record) for record in batch)
                    seen += len(batch)
                if seen and first is None:
                    first = (seen, time.perf_counter())
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ceiling consumer read {seen:,} of {total:,} in time")
            finished = time.perf_counter()
    finally:
        await consumer.stop()
    assert first is not None
    # At least: under load the producer may retry a send the broker had taken (a duplicate).
    if sum(counts.values()) < total:
        raise RuntimeError(f"ceiling counted {sum(counts.values()):,} of {total:,} events")
    return rate_after_first(total, first[0], first[1], finished), kept


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a process in MB from /proc (VmRSS now, VmHWM its peak), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass(frozen=True, slots=True)
class WorkerRun:
    """What one worker process did while catching up."""

    per_second: float
    peak_rss_mb: float
    """The kernel's high-water mark (VmHWM) at the end, at least the highest sample."""
    rss_samples_mb: list[float]


async def worker_rate(env: dict[str, str], dsn: str, total: int, log_path: Path) -> WorkerRun:
    """The whole worker process, timed by polling what it has counted in PostgreSQL; its
    resident memory sampled at every poll while catching up."""
    env["AGGREGATOR_PORT"] = str(spare_port())
    counted = 0
    samples: list[float] = []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data, log_path.open("wb") as log:
        env["AGGREGATOR_DATA_DIR"] = data
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timing
            [sys.executable, "-m", "capps_aggregator", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        connection = await asyncpg.connect(dsn)
        deadline = time.monotonic() + _time_limit_s(total) + 60  # + the worker's start-up
        try:
            first: tuple[int, float] | None = None
            with ticking(
                "aggregator worker: python -m capps_aggregator worker",
                status=lambda: (
                    f"{counted:,}/{total:,} counted, RSS {max(samples, default=0):.0f} MB"
                ),
            ):
                while True:
                    counted = int(
                        await connection.fetchval(
                            "SELECT coalesce(sum(requests), 0) FROM usage_day"
                        )
                    )
                    moment = time.perf_counter()
                    samples.append(rss_mb(process.pid))
                    if counted and first is None:
                        first = (counted, moment)
                    if counted >= total:
                        break
                    if process.poll() is not None:
                        tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[
                            -2000:
                        ]
                        raise RuntimeError(
                            f"the worker exited with {process.returncode}; {log_path}:\n{tail}"
                        )
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the worker counted {counted:,} of {total:,} in time")
                    await asyncio.sleep(POLL_S)
            assert first is not None
            peak = max(rss_mb(process.pid, "VmHWM"), *samples)
            return WorkerRun(rate_after_first(total, first[0], first[1], moment), peak, samples)
        finally:
            await connection.close()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _writer_rate(
    database_url: str, redis_url: str, bootstrap: str, topic: str, records: Kept
) -> float:
    """The worker's writer alone on the records the ceiling read, in the worker's batch size.

    Built by the worker's own composition root (`AggregatorRuntime`), so it is the same writer.
    """
    settings = AggregatorSettings(
        database_url=database_url,
        database_pool_size=2,
        redis_url=redis_url,
        kafka_bootstrap_servers=bootstrap,
        aggregator_topic=topic,
        aggregator_dlq_topic=topic + ".dlq",
    )
    runtime = AggregatorRuntime(settings)
    writer = (await runtime.open()).writer
    done = 0
    try:
        window = TimeWindow(0.0, 4_000_000_000.0)
        # Partition by partition in offset order, as the consumer hands them over.
        ordered = sorted(records, key=lambda item: (item[0], item[1].offset))
        first: tuple[int, float] | None = None
        with ticking(
            "aggregator writer alone: PostgreSQL + Redis",
            status=lambda: f"{done:,}/{len(records):,} written",
        ):
            for start in range(0, len(ordered), BATCH_MAX):
                batch = ordered[start : start + BATCH_MAX]
                fetched: dict[int, list[ConsumerRecord[bytes, bytes]]] = {}
                for partition, record in batch:
                    fetched.setdefault(partition, []).append(record)
                await writer.apply(*decode_batch(fetched, window))
                done += len(batch)
                if first is None:
                    first = (done, time.perf_counter())
            finished = time.perf_counter()
        assert first is not None
        return rate_after_first(len(ordered), first[0], first[1], finished)
    finally:
        await runtime.close()


def _time_limit_s(total: int) -> float:
    # Generous: a machine doing 1,000 events/s would be broken, not slow.
    return 30.0 + total / 1_000


async def _reset_stores(dsn: str, hot: aioredis.Redis, run: str, topic: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"TRUNCATE {USAGE_TABLES}")
    finally:
        await connection.close()
    await _drop_redis_keys(hot, run, topic)


async def _drop_redis_keys(hot: aioredis.Redis, run: str, topic: str) -> None:
    keys = [key async for key in hot.scan_iter(match=f"capps:usage:bench-{run}-*")]
    if keys:
        await hot.delete(*keys)
    fields = [field async for field, _ in hot.hscan_iter(OFFSETS_KEY, match=f"{topic}:*")]
    if fields:
        await hot.hdel(OFFSETS_KEY, *fields)


async def _delete_groups(bootstrap: str, admin: AIOKafkaAdminClient, groups: list[str]) -> None:
    """Delete the (now empty) consumer groups; aiokafka's admin client has no call for it."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id="capps-agg-bench",
        **kafka_security().client_options(),
    )
    await client.bootstrap()
    try:
        for group in groups:
            node = await admin.find_coordinator(group)
            response = await client.send(node, DeleteGroupsRequest([group]))
            for name, code in response.results:
                # 69 GROUP_ID_NOT_FOUND: the broker already dropped it.
                if code not in (0, 69):
                    say(f"aggregator: consumer group {name} not deleted (Kafka error {code})")
    finally:
        await client.close()
