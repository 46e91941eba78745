"""Measure the aggregator's batch path on the real servers: events/s of the whole worker and of
the writer alone (PostgreSQL + Redis, no faust), against a unique topic, database and group.

Run: `uv run python services/usage-aggregator/bench/measure_throughput.py [events] [apps]`
with DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS exported. Prints one JSON line.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from capps_aggregator.dlq import DeadLetterPublisher
from capps_aggregator.migrate import upgrade_head
from capps_aggregator.pipeline import UsageBatchWriter
from capps_aggregator.rollup import SourceRecord
from capps_aggregator.sinks.postgres import PostgresUsageSink
from capps_aggregator.sinks.redis import RedisUsageSink
from capps_events import RequestEvent, TopicSpec, encode_request, new_event_id
from capps_kit.kafka import ensure_topics, make_producer
from capps_kit.postgres import asyncpg_dsn
from capps_kit.redis import create_redis
from capps_usage.keys import OFFSETS_KEY

PARTITIONS = 12
WRITER_BATCH = 10_000


def _events(count: int, apps: list[str]) -> list[RequestEvent]:
    now = datetime.now(UTC)
    return [
        RequestEvent(
            id=new_event_id(),
            time=now - timedelta(seconds=index % 600),
            tenant_id="bench",
            app_id=apps[index % len(apps)],
            method="GET",
            route="/api/alerts",
            status=200,
            latency_ms=1.0,
            bytes_in=0,
            bytes_out=100,
            request_id=str(index),
            gateway="bench",
        )
        for index in range(count)
    ]


async def _produce(bootstrap: str, topic: str, events: list[RequestEvent]) -> None:
    producer = make_producer(bootstrap, "capps-agg-bench")
    await producer.start()
    try:
        deliveries = []
        for event in events:
            record = encode_request(event, "bench")
            deliveries.append(
                await producer.send(
                    topic, key=record.key, value=record.value, headers=record.headers
                )
            )
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


async def _worker_rate(env: dict[str, str], dsn: str, total: int) -> float:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    env["AGGREGATOR_PORT"] = str(port.getsockname()[1])
    port.close()
    with tempfile.TemporaryDirectory() as data:
        env["AGGREGATOR_DATA_DIR"] = data
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timing
            [sys.executable, "-m", "capps_aggregator", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        connection = await asyncpg.connect(dsn)
        try:
            first_seen: tuple[float, int] | None = None
            while True:
                counted = int(
                    await connection.fetchval("SELECT coalesce(sum(requests), 0) FROM usage_day")
                )
                moment = time.perf_counter()
                if counted and first_seen is None:
                    first_seen = (moment, counted)
                if counted >= total:
                    break
                if process.poll() is not None:
                    raise RuntimeError("worker exited")
                await asyncio.sleep(0.05)
            assert first_seen is not None
            start, already = first_seen
            return (total - already) / max(moment - start, 1e-9)
        finally:
            await connection.close()
            process.send_signal(signal.SIGTERM)
            process.wait(60)


async def _writer_rate(database_url: str, redis_url: str, bootstrap: str, total: int) -> float:
    topic = f"capps-agg-bench-direct-{uuid.uuid4().hex[:8]}"
    apps = [f"bench-direct-{index}" for index in range(50)]
    records = []
    for index, event in enumerate(_events(total, apps)):
        encoded = encode_request(event, "bench")
        records.append(
            SourceRecord(
                index % PARTITIONS, index // PARTITIONS, encoded.key, encoded.value, encoded.headers
            )
        )
    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=2)
    client = create_redis(redis_url)
    producer = make_producer(bootstrap, "capps-agg-bench")
    await producer.start()
    try:
        writer = UsageBatchWriter(
            PostgresUsageSink(pool, topic),
            RedisUsageSink(client, topic),
            DeadLetterPublisher(producer, topic + ".dlq"),
        )
        started = time.perf_counter()
        for start in range(0, total, WRITER_BATCH):
            await writer.apply(records[start : start + WRITER_BATCH])
        return total / (time.perf_counter() - started)
    finally:
        keys = [key async for key in client.scan_iter(match="capps:usage:bench-direct-*")]
        if keys:
            await client.delete(*keys)
        fields = [f async for f, _ in client.hscan_iter(OFFSETS_KEY, match=f"{topic}:*")]
        if fields:
            await client.hdel(OFFSETS_KEY, *fields)
        await producer.stop()
        await client.aclose()
        await pool.close()


async def main(total: int, app_count: int) -> None:
    database_url = os.environ["DATABASE_URL"]
    redis_url = os.environ["REDIS_URL"]
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    run = uuid.uuid4().hex[:8]
    name = f"capps_agg_bench_{run}"
    topic = f"capps-agg-bench-{run}"
    admin_pg = await asyncpg.connect(asyncpg_dsn(database_url))
    await admin_pg.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    kafka_admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await kafka_admin.start()
    client = create_redis(redis_url)
    apps = [f"bench-{run}-{index}" for index in range(app_count)]
    try:
        await asyncio.to_thread(upgrade_head, url)
        await ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS), TopicSpec(topic + ".dlq", 1)])
        await _produce(bootstrap, topic, _events(total, apps))
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "AGGREGATOR_TOPIC": topic,
            "AGGREGATOR_DLQ_TOPIC": topic + ".dlq",
            "AGGREGATOR_GROUP": topic,
            "LOG_LEVEL": "WARNING",
        }
        worker = await _worker_rate(env, asyncpg_dsn(url), total)
        writer = await _writer_rate(url, redis_url, bootstrap, total)
        print(  # noqa: T201 - the script's output
            orjson.dumps(
                {
                    "events": total,
                    "apps": app_count,
                    "worker_events_per_s": round(worker),
                    "writer_only_events_per_s": round(writer),
                }
            ).decode()
        )
    finally:
        keys = [key async for key in client.scan_iter(match=f"capps:usage:bench-{run}-*")]
        if keys:
            await client.delete(*keys)
        fields = [f async for f, _ in client.hscan_iter(OFFSETS_KEY, match=f"{topic}:*")]
        if fields:
            await client.hdel(OFFSETS_KEY, *fields)
        await client.aclose()
        await kafka_admin.delete_topics([topic, topic + ".dlq"])
        await kafka_admin.close()
        await admin_pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_pg.close()


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 100,
        )
    )
