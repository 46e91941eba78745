"""`python -m capps_aggregator worker` as a real process: exact counts, DLQ, kill -9 restart."""

import asyncio
import subprocess
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest

from capps_usage.stats import read_stats
from tests.integration.aggregator.worker_process import TIMEOUT_S, Worker, http_get, poll

pytestmark = pytest.mark.integration

APPS = 7


async def counts(pg: Any, hot: Any, apps: list[str]) -> tuple[int, int, int]:
    """(PostgreSQL minute total, PostgreSQL day total, Redis trailing-24 h total)."""
    minutes = await pg.fetchval(
        "SELECT coalesce(sum(requests), 0) FROM usage_minute WHERE app_id = ANY($1)", apps
    )
    days = await pg.fetchval(
        "SELECT coalesce(sum(requests), 0) FROM usage_day WHERE app_id = ANY($1)", apps
    )
    stats = await read_stats(hot, apps)
    return int(minutes), int(days), sum(s.requests_24h for s in stats.values())


async def test_worker_counts_every_event_once_and_dead_letters_garbage(
    *,
    pg: Any,
    hot: Any,
    topics: Any,
    run_id: str,
    produce: Any,
    make_event: Any,
    recent: Any,
    read_topic: Any,
    workers: Callable[[], Worker],
    worker_env: dict[str, str],
) -> None:
    apps = [f"app-{run_id}-{index}" for index in range(APPS)]
    total = 3000
    events = [make_event(apps[i % APPS], "tenant-e2e", recent(i % 180)) for i in range(total)]
    await produce(events, 1)

    worker = workers()

    async def all_counted() -> bool:
        return await counts(pg, hot, apps) == (total, total, total)

    await poll(all_counted, worker, f"{total} events in PostgreSQL and Redis")
    admin = f"http://127.0.0.1:{worker_env['AGGREGATOR_PORT']}"
    status, body = await asyncio.to_thread(http_get, f"{admin}/readyz")
    assert status == 200, body
    metrics_body = b""

    async def caught_up_in_metrics() -> bool:
        nonlocal metrics_body
        status, metrics_body = await asyncio.to_thread(http_get, f"{admin}/metrics")
        lag = [
            line
            for line in metrics_body.splitlines()
            if line.startswith(b"capps_aggregator_lag_records{")
        ]
        return status == 200 and bool(lag) and all(line.endswith(b" 0.0") for line in lag)

    await poll(caught_up_in_metrics, worker, "lag 0 on every partition in /metrics")
    body = metrics_body
    assert b'capps_aggregator_events_counted_total{sink="postgres"} 3000.0' in body
    assert b'capps_aggregator_dead_lettered_total{reason="undecodable"} 1.0' in body

    dead = await read_topic(topics.dlq, 3.0)
    assert [(r.key, r.value) for r in dead] == [(b"garbage-0", b"\xff not an event")]
    assert any(name == "dlq_reason" for name, _ in dead[0].headers)
    newest = max(event.time for event in events if event.app_id == apps[0])
    assert (
        await pg.fetchval("SELECT last_seen FROM app_last_seen WHERE app_id = $1", apps[0])
        == newest
    )
    assert (
        await pg.fetchval(
            "SELECT sum(next_offset) FROM usage_offsets WHERE topic = $1", topics.requests
        )
        == total + 1
    )
    assert worker.stop() == 0, worker.tail()


async def test_worker_killed_mid_stream_loses_and_doubles_nothing(
    *,
    pg: Any,
    hot: Any,
    run_id: str,
    produce: Any,
    make_event: Any,
    recent: Any,
    workers: Callable[[], Worker],
    worker_env: dict[str, str],
) -> None:
    apps = [f"app-{run_id}-{index}" for index in range(APPS)]
    first_part = 40_000
    await produce(
        [make_event(apps[i % APPS], "tenant-kill", recent(i % 60)) for i in range(first_part)]
    )
    # Small batches so the kill lands mid-stream, between commits.
    worker_env["AGGREGATOR_BATCH_MAX"] = "250"
    worker = workers()

    async def started_counting() -> bool:
        minutes, _, _ = await counts(pg, hot, apps)
        return minutes >= 2000

    await poll(started_counting, worker, "the first counted batches")
    worker.kill()
    counted_at_kill = (await counts(pg, hot, apps))[0]
    assert counted_at_kill < first_part, "the kill came too late to be mid-stream"

    second_part = 1000
    await produce(
        [make_event(apps[i % APPS], "tenant-kill", recent(1)) for i in range(second_part)]
    )
    total = first_part + second_part
    restarted = workers()

    async def all_counted() -> bool:
        return await counts(pg, hot, apps) == (total, total, total)

    await poll(all_counted, restarted, f"{total} events after the restart")
    await asyncio.sleep(2)  # anything replayed late would show up now
    assert await counts(pg, hot, apps) == (total, total, total)
    assert restarted.stop() == 0, restarted.tail()


async def test_worker_exits_when_counting_cannot_go_on(
    *,
    pg: Any,
    run_id: str,
    produce: Any,
    make_event: Any,
    recent: Any,
    workers: Callable[[], Worker],
) -> None:
    """A failure that retrying cannot fix stops the process, so its supervisor restarts it
    and the failure is seen, instead of a worker that looks alive but counts nothing."""
    await pg.execute("DROP TABLE usage_day")
    await produce([make_event(f"app-{run_id}-0", "tenant-broken", recent(1))])
    worker = workers()
    assert worker.process is not None
    try:
        returncode = await asyncio.to_thread(worker.process.wait, TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker kept running with a broken database:\n{worker.tail()}")
    assert returncode != 0, worker.tail()
    assert "usage_day" in worker.tail()


def counted_by(body: bytes) -> float:
    """`capps_aggregator_events_counted_total{sink="postgres"}` from a /metrics body."""
    prefix = b'capps_aggregator_events_counted_total{sink="postgres"} '
    for line in body.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def test_two_workers_share_the_partitions_and_rebalances_lose_and_double_nothing(
    *,
    pg: Any,
    hot: Any,
    run_id: str,
    produce: Any,
    make_event: Any,
    recent: Any,
    workers: Callable[..., Worker],
) -> None:
    # Many apps, so every partition (keyed by app) gets events of each part.
    apps = [f"app-{run_id}-{index}" for index in range(30)]
    first_part = 30_000
    await produce(
        [make_event(apps[i % len(apps)], "tenant-two", recent(i % 60)) for i in range(first_part)]
    )
    one = workers(AGGREGATOR_BATCH_MAX="250")

    async def started_counting() -> bool:
        return (await counts(pg, hot, apps))[0] >= 2000

    await poll(started_counting, one, "the first worker's first batches")
    two = workers(AGGREGATOR_BATCH_MAX="250")  # joins the group: a rebalance mid-stream
    ready_two = f"http://127.0.0.1:{two.env['AGGREGATOR_PORT']}/readyz"

    async def two_owns_partitions() -> bool:
        try:
            return (await asyncio.to_thread(http_get, ready_two))[0] == 200
        except OSError:  # not listening yet
            return False

    await poll(two_owns_partitions, two, "the second worker owning partitions")
    second_part = 3000
    await produce(
        [make_event(apps[i % len(apps)], "tenant-two", recent(1)) for i in range(second_part)]
    )
    total = first_part + second_part

    async def all_counted() -> bool:
        return await counts(pg, hot, apps) == (total, total, total)

    await poll(all_counted, two, f"{total} events with two workers")
    bodies = [
        (await asyncio.to_thread(http_get, f"http://127.0.0.1:{w.env['AGGREGATOR_PORT']}/metrics"))[
            1
        ]
        for w in (one, two)
    ]
    shares = [counted_by(body) for body in bodies]
    assert all(share > 0 for share in shares), shares  # both counted a part of the stream

    # The first one leaves while more arrive: its partitions move to the second one.
    third_part = 3000
    await produce(
        [make_event(apps[i % len(apps)], "tenant-two", recent(1)) for i in range(third_part)]
    )
    assert one.stop() == 0, one.tail()
    total += third_part
    await poll(all_counted, two, f"{total} events after the first worker left")
    assert two.stop() == 0, two.tail()


async def test_a_topic_recreated_under_the_usage_database_is_reported_until_repaired(
    *,
    pg: Any,
    hot: Any,
    topics: Any,
    run_id: str,
    produce: Any,
    make_event: Any,
    recent: Any,
    workers: Callable[..., Worker],
    worker_env: dict[str, str],
) -> None:
    """Watermarks left by an earlier topic of the same name lie past the new topic's end: its
    records would be skipped as already counted. The worker says so (readiness, metric, log)
    instead of skipping in silence, and counts them once the operator repaired the offsets."""
    await pg.executemany(
        "INSERT INTO usage_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)",
        [(topics.requests, partition, 5000) for partition in range(topics.partitions)],
    )
    apps = [f"app-{run_id}-{index}" for index in range(3)]
    total = 30
    await produce([make_event(apps[i % 3], "tenant-recreated", recent(i)) for i in range(total)])
    worker = workers(AGGREGATOR_TOPIC_CHECK_EVERY_S="0.5")
    admin = f"http://127.0.0.1:{worker_env['AGGREGATOR_PORT']}"
    body = b""

    async def reported() -> bool:
        nonlocal body
        try:
            status, body = await asyncio.to_thread(http_get, f"{admin}/readyz")
        except urllib.error.URLError:  # the admin port is not open yet
            return False
        return status == 503 and b"recreated" in body

    await poll(reported, worker, "readiness naming the topic behind its watermarks")
    assert b"watermark 5000" in body
    _, metrics_body = await asyncio.to_thread(http_get, f"{admin}/metrics")
    assert f"capps_aggregator_partitions_past_end {float(topics.partitions)}".encode() in (
        metrics_body
    )
    assert await counts(pg, hot, apps) == (0, 0, 0), worker.tail()

    # The README's repair (the hot store holds no offsets of this topic, so no rebuild is
    # needed here): forget the old topic's offsets; the paused partitions then resume.
    await pg.execute("DELETE FROM usage_offsets WHERE topic = $1", topics.requests)

    async def all_counted() -> bool:
        return await counts(pg, hot, apps) == (total, total, total)

    await poll(all_counted, worker, f"the {total} events counted once the offsets were repaired")
    status, body = await asyncio.to_thread(http_get, f"{admin}/readyz")
    assert status == 200, body
