"""The composition root: `open_runtime(settings)` builds everything a gateway process runs on.

Clients, caches, the event publisher, the app-state view, the rate limiter and their background
start-up, built in one place that the ASGI app's lifespan, tests and benchmarks all call, and
closed in reverse by `Runtime.close`.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from opentelemetry.trace import Tracer

from capps_gateway.appstate import AppStateView
from capps_gateway.auth import JwksKeyStore, TokenVerifier
from capps_gateway.auth.external import ExternalTokenVerifier, IssuerRouter
from capps_gateway.auth.issuer_keys import IssuerKeys
from capps_gateway.auth.issuers import IssuerConfig
from capps_gateway.events import SpoolingPublisher
from capps_gateway.proxy import UpstreamProxy
from capps_gateway.ratelimit import RateLimiter
from capps_gateway.settings import GatewaySettings
from capps_gateway.tracing import TracedUpstreamProxy, traced_publisher
from capps_gateway.upstream import UpstreamPool
from capps_kit.redis import create_redis

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    """What one gateway process runs on; start-up continues in `startup_tasks`."""

    session: aiohttp.ClientSession
    """For the signing keys and discovery documents; calls are relayed through `proxy`."""
    pool: UpstreamPool
    keys: JwksKeyStore
    verifier: TokenVerifier | IssuerRouter
    proxy: UpstreamProxy
    publisher: SpoolingPublisher
    apps: AppStateView
    limiter: RateLimiter
    startup_tasks: list["asyncio.Task[None]"]

    async def close(self) -> None:
        """Stop start-up, flush events, stop the view, close the clients; never raises."""
        for task in self.startup_tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.publisher.stop()
        except Exception:
            log.exception("Kafka producer did not stop cleanly")
        try:
            await self.apps.stop()
        except Exception:
            log.exception("app state consumer did not stop cleanly")
        await self.limiter.close()
        await self.pool.close()
        await self.session.close()


def open_runtime(
    settings: GatewaySettings,
    *,
    issuers: Sequence[IssuerConfig] = (),
    all_permissions: frozenset[str] = frozenset(),
    tracer: Tracer | None = None,
) -> Runtime:
    """Build the runtime in the running loop; start-up goes on in the background so `/readyz`
    can say what is still missing (the view's task keeps tailing its topic after loading).

    With a `tracer` the proxy and the publisher are their traced kinds (tracing.py)."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    pool = UpstreamPool(
        settings.gateway_upstream_url,
        max_connections=settings.gateway_upstream_max_connections,
        idle_timeout_s=settings.gateway_upstream_idle_timeout_s,
        timeout_s=settings.gateway_upstream_timeout_s,
    )
    keys = JwksKeyStore(session, settings.jwks_url)
    registry_verifier = TokenVerifier(
        keys, issuer=settings.token_issuer, audience=settings.token_audience
    )
    # External issuers, when configured, are routed to by each token's `iss`.
    issuer_keys = [IssuerKeys(session, config) for config in issuers]
    verifier: TokenVerifier | IssuerRouter = (
        IssuerRouter(
            registry_verifier,
            ExternalTokenVerifier(issuer_keys, all_permissions=all_permissions),
        )
        if issuer_keys
        else registry_verifier
    )
    publisher = (
        SpoolingPublisher if tracer is None else functools.partial(traced_publisher, tracer)
    )(
        settings.kafka_bootstrap_servers,
        settings.gateway_events_topic,
        settings.instance_id,
        spool_dir=settings.gateway_spool_dir,
        buffer_max=settings.gateway_events_buffer_max,
        in_flight_max=settings.gateway_events_in_flight_max,
        stall_s=settings.gateway_events_stall_s,
        flush_timeout_s=settings.gateway_events_flush_timeout_s,
        linger_s=settings.gateway_events_linger_s,
        segment_bytes=settings.gateway_spool_segment_bytes,
        spool_max_bytes=settings.gateway_spool_max_bytes,
        security=settings.kafka_security,
    )
    apps = AppStateView(
        settings.kafka_bootstrap_servers,
        settings.gateway_apps_topic,
        settings.instance_id,
        settings.kafka_security,
    )
    tasks = [
        asyncio.create_task(keys.load_until_ready(), name="jwks-load"),
        asyncio.create_task(publisher.start_until_ready(), name="kafka-start"),
        asyncio.create_task(apps.run(), name="apps-view"),
        *(
            asyncio.create_task(holder.run(), name=f"issuer-keys-{holder.config.issuer}")
            for holder in issuer_keys
        ),
    ]
    proxy = (
        UpstreamProxy(pool, settings.gateway_upstream_url)
        if tracer is None
        else TracedUpstreamProxy(pool, settings.gateway_upstream_url, tracer)
    )
    limiter = RateLimiter(
        create_redis(settings.redis_url, timeout_s=settings.gateway_ratelimit_timeout_s),
        fallback_share=settings.gateway_ratelimit_fallback_processes,
        timeout_s=settings.gateway_ratelimit_timeout_s,
        lease_max=settings.gateway_ratelimit_lease_max,
    )
    return Runtime(session, pool, keys, verifier, proxy, publisher, apps, limiter, tasks)
