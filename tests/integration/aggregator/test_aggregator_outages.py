"""The worker rides through a real PostgreSQL restart and a real Redis restart (servers this
test starts itself, so nothing shared is touched) and the counts come out exact."""

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from capps_aggregator.migrate import upgrade_head
from capps_kit.redis import create_redis
from capps_usage.stats import read_stats
from tests.integration.aggregator.worker_process import Worker, free_port, poll

pytestmark = pytest.mark.integration

APPS = 7


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the packaged `postgres` user runs it then.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class OwnPostgres:
    """A PostgreSQL server of this test in a temporary directory, restartable."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            pytest.fail("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bindir = found[-1].parent
        self.home = Path(tempfile.mkdtemp(prefix="capps-agg-pg-", dir="/tmp"))
        self.home.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            _as_postgres_user(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.home / "data"),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-locale",
                    "--encoding=UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        with (self.home / "postgres.log").open("ab") as log:
            self.process = subprocess.Popen(
                _as_postgres_user(
                    [
                        str(self.bindir / "postgres"),
                        "-D",
                        str(self.home / "data"),
                        "-p",
                        str(self.port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"unix_socket_directories={self.home}",
                    ]
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # Signal the postmaster itself (runuser does not pass signals on); its pid is the
        # first line of postmaster.pid in this test's own data directory.
        pid_file = self.home / "data" / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        if postmaster is None:
            self.process.send_signal(sig)
        else:
            os.kill(postmaster, sig)  # SIGQUIT: immediate shutdown, SIGINT: fast
        self.process.wait(60)

    def restart(self) -> None:
        self.stop(signal.SIGQUIT)
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


async def _wait_answering(url: str) -> None:
    for _ in range(300):
        try:
            connection = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.1)
        else:
            await connection.close()
            return
    pytest.fail("the test's PostgreSQL did not start")


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    """A migrated PostgreSQL of this test only."""
    server = OwnPostgres()
    server.start()
    try:
        await _wait_answering(server.url)
        await asyncio.to_thread(upgrade_head, server.url)
        yield server
    finally:
        server.remove()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A redis-server of this test, no persistence, and a way to SIGKILL and restart it."""
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


async def test_counts_stay_exact_through_postgres_and_redis_restarts(
    *,
    run_id: str,
    produce: Any,
    make_event: Any,
    recent: Any,
    workers: Callable[..., Worker],
    own_postgres: OwnPostgres,
    own_redis: tuple[str, Callable[[], None]],
) -> None:
    redis_url, restart_redis = own_redis
    apps = [f"app-{run_id}-{index}" for index in range(APPS)]
    first_part = 20_000
    await produce([make_event(apps[i % APPS], "t-out", recent(i % 60)) for i in range(first_part)])
    worker = workers(DATABASE_URL=own_postgres.url, REDIS_URL=redis_url, AGGREGATOR_BATCH_MAX="250")
    hot = create_redis(redis_url)

    async def in_postgres() -> int:
        try:
            connection = await asyncpg.connect(own_postgres.url, timeout=2)
            try:
                found = await connection.fetchval(
                    "SELECT coalesce(sum(requests), 0) FROM usage_minute WHERE app_id = ANY($1)",
                    apps,
                )
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError):  # restarting: not yet
            return -1
        return int(found)

    async def in_redis() -> int:
        try:
            await hot.ping()  # a fresh connection after the restart, before the pipeline
        except Exception:  # noqa: BLE001 - restarting: not yet
            return -1
        return sum(s.requests_24h for s in (await read_stats(hot, apps)).values())

    async def totals() -> tuple[int, int]:
        return await in_postgres(), await in_redis()

    try:
        await poll(lambda: _at_least(in_postgres, 2000), worker, "the first batches")
        await asyncio.to_thread(own_postgres.restart)  # mid-stream, immediate shutdown
        await poll(lambda: _at_least(in_postgres, 8000), worker, "counting again after PostgreSQL")
        await asyncio.to_thread(restart_redis)  # mid-stream, everything in memory lost
        second_part = 2000
        await produce([make_event(apps[i % APPS], "t-out", recent(1)) for i in range(second_part)])
        total = first_part + second_part

        async def exact() -> bool:
            return await totals() == (total, total)

        await poll(exact, worker, f"{total} events in both stores after both restarts")
        assert worker.process is not None
        assert worker.process.poll() is None, worker.tail()
        assert worker.stop() == 0, worker.tail()
    finally:
        await hot.aclose()


async def _at_least(counted: Callable[[], Any], count: int) -> bool:
    return bool(await counted() >= count)
