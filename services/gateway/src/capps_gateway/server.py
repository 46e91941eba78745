"""Serve the gateway in this process: the proxy on its HTTP edge (edge.py) and its admin app."""

import asyncio
import contextlib
import gc
import logging
import signal
import socket

from capps_catalog import load_catalog
from capps_gateway import edge as edge_module
from capps_gateway import loop_lag, metrics
from capps_gateway.app import GatewayApp
from capps_gateway.edge import Edge, EdgeLimits
from capps_gateway.settings import GatewaySettings
from capps_kit.health import serve_admin

log = logging.getLogger("capps_gateway")

GC_YOUNG_THRESHOLD = 20_000
BACKLOG = 2048


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening address several processes bind at once; the kernel spreads connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def edge_limits(settings: GatewaySettings) -> EdgeLimits:
    """The proxy port's HTTP limits from the settings."""
    return EdgeLimits(
        max_header_bytes=settings.gateway_max_header_bytes,
        header_timeout_s=settings.gateway_header_timeout_s,
        body_timeout_s=settings.gateway_body_timeout_s,
        # Callers hold keep-alive connections; a long idle timeout avoids reconnect storms.
        keep_alive_s=30.0,
    )


async def serve(
    settings: GatewaySettings, *, reuse_port: bool = False, admin_uds: str | None = None
) -> None:
    """Run the proxy until SIGINT/SIGTERM, then drain; the admin server lives and dies with it.

    A worker binds the shared port with SO_REUSEPORT and serves its admin app on a Unix
    socket for the supervisor, which owns the admin port.
    """
    # A call allocates a few hundred short-lived containers, freed by reference counting; the
    # cyclic collector's young-generation pass every 700 allocations found nothing to free
    # and cost ~15 µs per call under load (measured with gc.callbacks). Every 20,000 is enough.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    app = GatewayApp(settings, load_catalog(settings.catalog_path))
    await app.start()
    edge = Edge(app, edge_limits(settings))
    metrics.track(metrics.CONNECTIONS, lambda: len(edge.connections))
    metrics.track(metrics.CALLS_IN_PROGRESS, lambda: app.in_flight)
    # Whether the per-call modules run compiled (services/gateway/native.py).
    compiled = (edge_module.__file__ or "").endswith(".so")
    metrics.COMPILED.set(1 if compiled else 0)
    background = [
        asyncio.create_task(
            serve_admin(
                app.admin, settings.gateway_host, settings.gateway_admin_port, uds=admin_uds
            ),
            name="admin",
        ),
        asyncio.create_task(loop_lag.watch(metrics.LOOP_LAG.observe), name="loop-lag"),
    ]
    if metrics.MULTIPROCESS:
        background.append(asyncio.create_task(_sample_gauges(), name="metrics-sampler"))
    try:
        server = await loop.create_server(
            edge.protocol,
            backlog=BACKLOG,
            **(
                {"sock": shared_socket(settings.gateway_host, settings.gateway_port)}
                if reuse_port
                else {"host": settings.gateway_host, "port": settings.gateway_port}
            ),
        )
        log.info(
            "gateway listening",
            extra={
                "host": settings.gateway_host,
                "port": settings.gateway_port,
                "upstream": settings.gateway_upstream_url,
                "topic": settings.gateway_events_topic,
                "instance_id": settings.instance_id,
                "compiled": compiled,
            },
        )
        await stopping.wait()
        log.info("gateway stopping: finishing the calls in progress")
        server.close()
        await edge.drain(settings.gateway_shutdown_grace_s)
    finally:
        await app.stop()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info("gateway stopped")


async def _sample_gauges() -> None:
    while True:
        metrics.sample_tracked()
        await asyncio.sleep(1.0)
