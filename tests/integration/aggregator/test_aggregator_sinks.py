"""The sinks against real PostgreSQL, Redis and Kafka: exact counts under replays and lag."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from capps_aggregator.dlq import REASON_HEADER, DeadLetterPublisher
from capps_aggregator.pipeline import UsageBatchWriter
from capps_aggregator.rollup import PositionedEvent, SourceRecord, decode_batch
from capps_aggregator.sinks.postgres import PostgresUsageSink
from capps_aggregator.sinks.redis import RedisUsageSink
from capps_events import encode_request
from capps_kit.kafka import make_producer
from capps_usage.keys import OFFSETS_KEY, offset_field
from capps_usage.stats import read_stats

pytestmark = pytest.mark.integration


def batch(
    make_event: Callable[..., Any],
    app: str,
    partition: int,
    offsets: range,
    moment: datetime,
) -> list[PositionedEvent]:
    return [
        PositionedEvent(partition, offset, make_event(app, "tenant-x", moment))
        for offset in offsets
    ]


async def pg_totals(pg: Any, app: str) -> tuple[int, int, datetime | None]:
    minutes = await pg.fetchval(
        "SELECT coalesce(sum(requests), 0) FROM usage_minute WHERE app_id = $1", app
    )
    days = await pg.fetchval(
        "SELECT coalesce(sum(requests), 0) FROM usage_day WHERE app_id = $1", app
    )
    seen = await pg.fetchval("SELECT last_seen FROM app_last_seen WHERE app_id = $1", app)
    return int(minutes), int(days), seen


async def test_postgres_same_batch_twice_counts_once(
    pg: Any, topics: Any, run_id: str, make_event: Any, recent: Any
) -> None:
    sink = PostgresUsageSink(pg, topics.requests)
    app = f"app-{run_id}-a"
    moment = recent(5)
    events = batch(make_event, app, 0, range(10), moment) + batch(
        make_event, app, 1, range(3), moment
    )

    first = await sink.apply(events)
    second = await sink.apply(events)

    assert (first.counted, first.skipped) == (13, 0)
    assert (second.counted, second.skipped) == (0, 13)
    assert await pg_totals(pg, app) == (13, 13, moment)
    assert await sink.watermarks([0, 1, 2]) == {0: 10, 1: 3, 2: 0}


async def test_postgres_overlapping_batch_counts_only_the_new_part(
    pg: Any, topics: Any, run_id: str, make_event: Any, recent: Any
) -> None:
    sink = PostgresUsageSink(pg, topics.requests)
    app = f"app-{run_id}-a"
    early, late = recent(120), recent(1)
    await sink.apply(batch(make_event, app, 2, range(10), early))

    overlap = await sink.apply(batch(make_event, app, 2, range(5, 15), late))

    assert (overlap.counted, overlap.skipped) == (5, 5)
    minutes, days, seen = await pg_totals(pg, app)
    assert (minutes, days, seen) == (15, 15, late)
    # An older event arriving later never moves last_seen back.
    await sink.apply(batch(make_event, app, 0, range(1), early))
    assert (await pg_totals(pg, app))[2] == late


async def test_redis_same_batch_twice_counts_once_and_reads_back(
    hot: Any, topics: Any, run_id: str, make_event: Any
) -> None:
    sink = RedisUsageSink(hot, topics.requests)
    app = f"app-{run_id}-a"
    now = datetime.now(UTC)
    yesterday = now - timedelta(hours=25)
    events = batch(make_event, app, 0, range(4), now - timedelta(minutes=2)) + batch(
        make_event, app, 1, range(6), yesterday
    )

    first = await sink.apply(events)
    second = await sink.apply(events)

    assert (first.counted, second.counted, second.skipped) == (10, 0, 10)
    assert await sink.watermarks([0, 1]) == {0: 4, 1: 6}
    stats = (await read_stats(hot, [app], now))[app]
    assert stats.requests_24h == 4  # the 6 of 25 h ago fall outside the trailing window
    assert stats.last_seen is not None
    assert abs(stats.last_seen - (now - timedelta(minutes=2))) < timedelta(milliseconds=1)
    by_day = {count.date: count.requests for count in stats.trend_30d}
    assert sum(by_day.values()) == 10
    assert by_day[yesterday.date()] >= 6
    assert len(stats.trend_30d) == 30


async def test_redis_trims_days_older_than_35(
    hot: Any, topics: Any, run_id: str, make_event: Any
) -> None:
    sink = RedisUsageSink(hot, topics.requests)
    app = f"app-{run_id}-old"
    now = datetime.now(UTC)
    await sink.apply(batch(make_event, app, 0, range(1), now - timedelta(days=40)))
    await sink.apply(batch(make_event, app, 0, range(1, 2), now))
    days = await hot.hkeys(f"capps:usage:{app}:d")
    assert days == [now.date().isoformat().encode()]


async def test_redis_lagging_postgres_is_repaired_and_dlq_sent_once(
    *,
    pg: Any,
    hot: Any,
    topics: Any,
    infra: Any,
    run_id: str,
    make_event: Any,
    read_topic: Any,
) -> None:
    app = f"app-{run_id}-lag"
    moment = datetime.now(UTC) - timedelta(seconds=30)
    records = []
    for offset in range(20):
        encoded = encode_request(make_event(app, "tenant-x", moment), "test")
        records.append(SourceRecord(0, offset, encoded.key, encoded.value, encoded.headers))
    garbage = SourceRecord(0, 20, b"bad", b"{]", [("ce_type", b"something.else")])
    records.append(garbage)
    postgres = PostgresUsageSink(pg, topics.requests)
    redis_sink = RedisUsageSink(hot, topics.requests)
    producer = make_producer(infra.kafka_bootstrap_servers, "capps-agg-test")
    await producer.start()
    try:
        writer = UsageBatchWriter(postgres, redis_sink, DeadLetterPublisher(producer, topics.dlq))
        await writer.apply(records[:10])
        # A crash after PostgreSQL committed offsets 10..20 and before Redis applied them.
        await postgres.apply(decode_batch(records[10:])[0])
        assert await redis_sink.watermarks([0]) == {0: 10}

        replay = await writer.apply(records)  # the consumer resumes from an older commit
        again = await writer.apply(records)
    finally:
        await producer.stop()

    assert (replay.counted_postgres, replay.skipped_postgres) == (0, 21)
    assert (replay.counted_redis, replay.skipped_redis) == (10, 10)
    assert (again.counted_redis, again.counted_postgres) == (0, 0)
    assert replay.dead_lettered == 0  # PostgreSQL had passed it: not dead-lettered twice
    assert await hot.hget(OFFSETS_KEY, offset_field(topics.requests, 0)) == b"21"
    assert (await read_stats(hot, [app]))[app].requests_24h == 20
    assert (await pg_totals(pg, app))[0] == 20
    # The garbage went through the crash path (postgres.apply directly), so none reached the
    # DLQ from this test's writer; send it through a fresh partition to check the record.
    fresh = SourceRecord(1, 0, garbage.key, garbage.value, garbage.headers)
    producer = make_producer(infra.kafka_bootstrap_servers, "capps-agg-test")
    await producer.start()
    try:
        writer = UsageBatchWriter(postgres, redis_sink, DeadLetterPublisher(producer, topics.dlq))
        outcome = await writer.apply([fresh])
        await writer.apply([fresh])
    finally:
        await producer.stop()
    assert outcome.dead_lettered == 1
    dead = await read_topic(topics.dlq, 3.0)
    assert len(dead) == 1
    assert (dead[0].key, dead[0].value) == (b"bad", b"{]")
    headers = list(dead[0].headers)
    assert headers[0] == ("ce_type", b"something.else")
    assert headers[1][0] == REASON_HEADER
    assert b"ce_type" in headers[1][1]
