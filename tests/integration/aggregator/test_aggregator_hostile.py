"""Hostile records interleaved with good ones, through a real worker process: every good one
is counted exactly, every hostile one lands in the DLQ with its reason, the worker lives on."""

import asyncio
import json
from typing import Any

import pytest

from capps_events import encode_request
from capps_events.codec import REQUEST_EVENT_TYPE
from capps_kit.kafka import make_producer
from capps_usage.stats import read_stats
from tests.integration.aggregator.worker_process import http_get, poll

pytestmark = pytest.mark.integration

HEADERS = [("ce_type", REQUEST_EVENT_TYPE.encode()), ("ce_specversion", b"1.0")]


def hostile_records(good: dict[str, Any], run_id: str) -> list[tuple[bytes, bytes, str]]:
    """(key, value, expected reason) of records no counter may take."""

    def changed(**changes: Any) -> bytes:
        return json.dumps({**good, **changes}).encode()

    return [
        (b"h-overflow", changed(time="9999-12-31T23:59:59-23:59"), "time_out_of_window"),
        (b"h-decades", changed(time="1990-01-01T00:00:00+00:00"), "time_out_of_window"),
        (b"h-future", changed(time="2126-01-01T00:00:00+00:00"), "time_out_of_window"),
        (b"h-nul", changed(app_id=f"app-{run_id}-\u0000x"), "bad_id"),
        (b"h-long", changed(app_id="a" * 300), "bad_id"),
        (b"h-negative", changed(bytes_out=-5), "bad_size"),
        (b"h-latency", changed(latency_ms=-1.0), "bad_latency"),
        (b"h-status", changed(status=999), "bad_status"),
        (b"h-method", changed(method="BREW"), "bad_method"),
        (b"h-type", changed(status="200"), "undecodable"),
        (b"h-garbage", b"\xff\x00 not json", "undecodable"),
    ]


async def test_hostile_records_are_dead_lettered_and_good_ones_counted_exactly(  # noqa: PLR0915
    *,
    infra: Any,
    pg: Any,
    hot: Any,
    topics: Any,
    run_id: str,
    make_event: Any,
    recent: Any,
    read_topic: Any,
    workers: Any,
) -> None:
    apps = [f"app-{run_id}-{index}" for index in range(3)]
    refused_app = f"app-{run_id}-refused"
    # A row the store itself refuses although it passes validation (as a store may for
    # reasons validation cannot know): the worker must isolate it, not retry forever.
    await pg.execute(
        f"ALTER TABLE usage_minute ADD CONSTRAINT refuse_one CHECK (app_id <> '{refused_app}')"
    )
    sample = encode_request(make_event(apps[0], "tenant-h", recent(1)), "t").value
    assert sample is not None
    template = json.loads(sample)
    hostile = hostile_records(template, run_id)
    good_total = 0
    expected_dead: dict[bytes, str] = {}
    producer = make_producer(infra.kafka_bootstrap_servers, "capps-agg-test", infra.kafka_security)
    await producer.start()
    try:
        deliveries = []
        for round_index in range(20):
            for index in range(30):
                record = encode_request(make_event(apps[index % 3], "tenant-h", recent(index)), "t")
                deliveries.append(
                    await producer.send(
                        topics.requests, key=record.key, value=record.value, headers=record.headers
                    )
                )
                good_total += 1
            key, value, reason = hostile[round_index % len(hostile)]
            key = key + b"-%d" % round_index
            expected_dead[key] = reason
            deliveries.append(
                await producer.send(topics.requests, key=key, value=value, headers=HEADERS)
            )
            if round_index % 5 == 0:
                record = encode_request(make_event(refused_app, "tenant-h", recent(2)), "t")
                key = b"refused-%d" % round_index
                expected_dead[key] = "store_refused"
                deliveries.append(
                    await producer.send(
                        topics.requests, key=key, value=record.value, headers=record.headers
                    )
                )
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()

    worker = workers(LOG_LEVEL="WARNING")  # the level every other service accepts

    async def counted_and_dead_lettered() -> bool:
        minutes = await pg.fetchval(
            "SELECT coalesce(sum(requests), 0) FROM usage_minute WHERE app_id = ANY($1)", apps
        )
        stats = await read_stats(hot, apps)
        hot_total = sum(s.requests_24h for s in stats.values())
        dead = await pg.fetchval(
            "SELECT sum(next_offset) FROM usage_offsets WHERE topic = $1", topics.requests
        )
        return (minutes, hot_total, dead) == (
            good_total,
            good_total,
            good_total + len(expected_dead),
        )

    await poll(counted_and_dead_lettered, worker, "every good record counted, the rest passed")
    days = await pg.fetchval(
        "SELECT coalesce(sum(requests), 0) FROM usage_day WHERE app_id = ANY($1)", apps
    )
    assert days == good_total
    assert await pg.fetchval("SELECT count(*) FROM usage_day WHERE app_id = $1", refused_app) == 0
    # Nothing pinned last_seen in the future or a bucket decades away.
    assert await pg.fetchval(
        "SELECT max(last_seen) <= now() + interval '5 minutes' FROM app_last_seen"
    )
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM usage_minute WHERE minute > now() + interval '5 minutes'"
        )
        == 0
    )

    dead = await read_topic(topics.dlq, 5.0)
    found = {record.key: dict(record.headers)["dlq_reason"].decode() for record in dead}
    assert found == expected_dead

    admin = f"http://127.0.0.1:{worker.env['AGGREGATOR_PORT']}"
    status, body = await asyncio.to_thread(http_get, f"{admin}/metrics")
    assert status == 200
    for reason in set(expected_dead.values()):
        count = sum(1 for value in expected_dead.values() if value == reason)
        line = f'capps_aggregator_dead_lettered_total{{reason="{reason}"}} {count}.0'
        assert line.encode() in body, line
    assert worker.process is not None
    assert worker.process.poll() is None, worker.tail()
    assert worker.stop() == 0, worker.tail()
