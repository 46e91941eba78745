"""A Redis that lost its data never leaves the numbers wrong: the worker rebuilds it from
PostgreSQL by itself (FLUSHDB, a real restart without persistence), and `rebuild-redis`
restores exactly the same answers."""

import asyncio
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from capps_kit.redis import create_redis
from capps_usage.keys import HOT_READY_KEY, OFFSETS_KEY
from capps_usage.stats import AppStats, read_stats
from tests.integration.aggregator.worker_process import Worker, free_port, poll

pytestmark = pytest.mark.integration

APPS = 5


def spread_events(make_event: Any, apps: list[str], count: int, now: datetime) -> list[Any]:
    """Events over the last 30 hours and a few earlier days, so every stat has something."""
    moments = [now - timedelta(minutes=37 * index % (30 * 60)) for index in range(count)]
    moments += [now - timedelta(days=3 + index % 20, minutes=index) for index in range(count // 5)]
    return [make_event(apps[i % len(apps)], "tenant-r", moment) for i, moment in enumerate(moments)]


async def applied_in_redis(hot: Any, topic: str) -> int:
    """The sum of Redis's watermarks of `topic`: how many records Redis has passed."""
    marks = [int(value) async for field, value in hot.hscan_iter(OFFSETS_KEY, match=f"{topic}:*")]
    return sum(marks)


async def answers(hot: Any, apps: list[str], now: datetime) -> dict[str, AppStats]:
    """What the registry would show of these apps at `now` (the hot read model)."""
    return await read_stats(hot, apps, now)


async def test_flushed_redis_is_rebuilt_automatically_and_by_the_command(
    *,
    hot: Any,
    topics: Any,
    run_id: str,
    produce: Any,
    make_event: Any,
    workers: Any,
    worker_env: dict[str, str],
) -> None:
    apps = [f"app-{run_id}-{index}" for index in range(APPS)]
    now = datetime.now(UTC)
    first = spread_events(make_event, apps, 400, now)
    await produce(first)
    worker = workers()

    async def redis_passed(total: int) -> bool:
        return await applied_in_redis(hot, topics.requests) == total

    await poll(lambda: redis_passed(len(first)), worker, "the first events in Redis")
    before = await answers(hot, apps, now)
    assert sum(sum(day.requests for day in s.trend_30d) for s in before.values()) == len(first)

    await hot.flushdb()  # this test's Redis database only

    async def rebuilt_same() -> bool:
        return bool(await hot.exists(HOT_READY_KEY)) and await answers(hot, apps, now) == before

    await poll(rebuilt_same, worker, "the same answers again after FLUSHDB")

    second = spread_events(make_event, apps, 100, datetime.now(UTC))
    await produce(second)
    total = len(first) + len(second)
    await poll(lambda: redis_passed(total), worker, "the later events in Redis")
    moment = datetime.now(UTC)
    counted = await answers(hot, apps, moment)
    assert sum(sum(day.requests for day in s.trend_30d) for s in counted.values()) == total

    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "capps_aggregator",
        "rebuild-redis",
        env=worker_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(command.communicate(), timeout=120)
    assert command.returncode == 0, err.decode(errors="replace")
    assert b"rebuild-redis: done" in err, err
    assert await answers(hot, apps, moment) == counted
    assert await hot.exists(HOT_READY_KEY)
    assert worker.stop() == 0, worker.tail()


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A redis-server of this test without any persistence, and a way to restart it."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        with (tmp_path / "redis.log").open("ab") as log:
            processes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(tmp_path),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def restart() -> None:
        processes[-1].send_signal(signal.SIGKILL)
        processes[-1].wait(10)
        start()

    start()
    yield f"redis://127.0.0.1:{port}/0", restart
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


async def test_a_real_redis_restart_without_persistence_is_repaired(
    *,
    topics: Any,
    run_id: str,
    produce: Any,
    make_event: Any,
    workers: Any,
    volatile_redis: tuple[str, Any],
) -> None:
    url, restart = volatile_redis
    client = create_redis(url)
    try:
        apps = [f"app-{run_id}-{index}" for index in range(APPS)]
        now = datetime.now(UTC)
        first = spread_events(make_event, apps, 300, now)
        await produce(first)
        worker: Worker = workers(REDIS_URL=url)

        async def redis_passed(total: int) -> bool:
            try:
                return await applied_in_redis(client, topics.requests) == total
            except (OSError, ConnectionError, Exception):  # noqa: BLE001 - down while restarting
                return False

        await poll(lambda: redis_passed(len(first)), worker, "the first events in Redis")
        before = await answers(client, apps, now)

        await asyncio.to_thread(restart)  # SIGKILL: everything in memory is gone

        async def rebuilt_same() -> bool:
            try:
                ready = bool(await client.exists(HOT_READY_KEY))
            except Exception:  # noqa: BLE001 - the restarted server may not answer yet
                return False
            return ready and await answers(client, apps, now) == before

        await poll(rebuilt_same, worker, "the same answers after the restart")
        second = spread_events(make_event, apps, 50, datetime.now(UTC))
        await produce(second)
        total = len(first) + len(second)
        await poll(lambda: redis_passed(total), worker, "the later events after the restart")
        after = await answers(client, apps, datetime.now(UTC))
        assert sum(sum(day.requests for day in s.trend_30d) for s in after.values()) == total
        assert worker.process is not None
        assert worker.process.poll() is None, worker.tail()
        assert worker.stop() == 0, worker.tail()
    finally:
        await client.aclose()
