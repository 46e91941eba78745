"""`GATEWAY_WORKERS` gateway processes behind one port, under one supervisor.

Each worker is a whole gateway (its own app-state view, Kafka producer, rate limiter client,
spool subdirectory `worker-N` and instance id `<id>-wN`) binding the proxy port with
SO_REUSEPORT, so the kernel spreads connections. The supervisor owns the admin port: `/metrics`
aggregates the workers' prometheus_client multiprocess files, `/readyz` asks every worker's
own admin app over a Unix socket and is ready only when all are. A worker that dies is
restarted (its live gauges marked dead); SIGTERM or SIGINT is passed to every worker, each
finishing its calls and flushing its events, before the supervisor exits.
"""

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from multiprocessing.process import BaseProcess
from pathlib import Path

import aiohttp
import uvloop
from prometheus_client import CollectorRegistry, multiprocess

from capps_gateway.server import serve
from capps_gateway.settings import GatewaySettings
from capps_kit.health import DEGRADED, AdminApp, Degraded, ReadinessCheck, serve_admin
from capps_kit.logging import configure_logging

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0
PR_SET_PDEATHSIG = 1


def worker_settings(settings: GatewaySettings, index: int) -> GatewaySettings:
    """One worker's settings: its own instance id and spool directory."""
    return settings.model_copy(
        update={
            "instance_id": f"{settings.instance_id}-w{index}",
            "gateway_spool_dir": settings.gateway_spool_dir / f"worker-{index}",
        }
    )


def _run_worker(index: int, admin_socket: str) -> None:
    """A worker process's entry point (spawned: a fresh interpreter, multiprocess metrics)."""
    with contextlib.suppress(OSError, AttributeError):
        # Linux: a worker whose supervisor died is told to stop, never left orphaned.
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    settings = worker_settings(GatewaySettings(), index)
    configure_logging("gateway", settings.log_level)
    uvloop.run(serve(settings, reuse_port=True, admin_uds=admin_socket))


def supervise(settings: GatewaySettings) -> None:
    """Run the workers and the admin port until SIGTERM/SIGINT."""
    metrics_dir = tempfile.mkdtemp(prefix="capps-gateway-metrics-")
    run_dir = Path(tempfile.mkdtemp(prefix="capps-gateway-run-"))
    # Read by prometheus_client when a spawned worker imports it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvloop.run(_Supervisor(settings, run_dir).run())
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


class _Supervisor:
    def __init__(self, settings: GatewaySettings, run_dir: Path) -> None:
        self._settings = settings
        self._run_dir = run_dir
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {}
        self._stopping = asyncio.Event()

    def _socket(self, index: int) -> str:
        return str(self._run_dir / f"worker-{index}.sock")

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_run_worker,
            args=(index, self._socket(index)),
            name=f"capps-gateway-worker-{index}",
        )
        process.start()
        self._workers[index] = process
        log.info("gateway worker started", extra={"worker": index, "pid": process.pid})

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        for index in range(self._settings.gateway_workers):
            self._start(index)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        checks = {f"worker-{i}": self._check(i) for i in range(self._settings.gateway_workers)}
        admin = asyncio.create_task(
            serve_admin(
                AdminApp(checks, registry),
                self._settings.gateway_host,
                self._settings.gateway_admin_port,
            ),
            name="admin",
        )
        try:
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), RESTART_DELAY_S)
                if not self._stopping.is_set():
                    self._restart_dead()
        finally:
            await self._stop_all()
            admin.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await admin

    def _restart_dead(self) -> None:
        for index, process in list(self._workers.items()):
            if process.is_alive():
                continue
            log.error(
                "gateway worker exited, restarting",
                extra={"worker": index, "exitcode": process.exitcode},
            )
            if process.pid is not None:
                multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
            self._start(index)

    async def _stop_all(self) -> None:
        for process in self._workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for index, process in self._workers.items():
            await asyncio.to_thread(process.join, STOP_TIMEOUT_S)
            if process.is_alive():
                log.error("gateway worker did not stop in time, killed", extra={"worker": index})
                process.kill()
                await asyncio.to_thread(process.join, 5.0)

    def _check(self, index: int) -> ReadinessCheck:
        socket_path = self._socket(index)

        async def check() -> None:
            connector = aiohttp.UnixConnector(path=socket_path)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get("http://worker/readyz") as response,
            ):
                body = await response.json()
            checks: dict[str, str] = body.get("checks", {})
            failing = {
                name: value.removeprefix(DEGRADED)
                for name, value in checks.items()
                if value != "ok"
            }
            detail = "; ".join(f"{name}: {value}" for name, value in failing.items())
            if response.status != 200:
                raise RuntimeError(detail or f"not ready ({response.status})")
            if failing:
                raise Degraded(detail)

        return check
