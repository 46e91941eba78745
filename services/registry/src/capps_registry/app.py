"""The registry's composition root: `build_api()` and the lifespan that opens its resources."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from capps_catalog import load_catalog
from capps_kit import postgres
from capps_kit import redis as kit_redis
from capps_kit.health import run_checks
from capps_registry.app_keys.endpoints import router as app_keys_router
from capps_registry.apps.endpoints import router as apps_router
from capps_registry.audit.endpoints import router as audit_router
from capps_registry.client_secrets.endpoints import router as secrets_router
from capps_registry.db import Pool, rls_bypass_reason
from capps_registry.errors import install_error_handlers
from capps_registry.limits import BodyLimitMiddleware
from capps_registry.me.endpoints import router as me_router
from capps_registry.metrics import RequestContextMiddleware
from capps_registry.oauth.endpoints import router as oauth_router
from capps_registry.oauth.errors import OAuthError, oauth_error_response
from capps_registry.oauth.service import keep_retired_seconds, load_signing_keys
from capps_registry.outbox.relay import OutboxRelay
from capps_registry.settings import RegistrySettings
from capps_registry.state import STATE_KEY, RegistryState, StateDep
from capps_registry.usage.endpoints import router as usage_router
from capps_registry.web import install_page

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_state(settings: RegistrySettings) -> AsyncIterator[RegistryState]:
    """Open the pool, the Redis client, the catalog and the signing keys; close them after."""
    catalog = load_catalog(settings.catalog_path)
    pool = await postgres.settings_pool(settings)
    redis_client = kit_redis.create_redis(settings.redis_url)
    try:
        await refuse_rls_bypass(pool, settings)
        keys = await load_signing_keys(
            pool, settings.registry_key_encryption_key, keep_retired_seconds(settings)
        )
        log.info("registry ready", extra={"kid": keys.kid, "issuer": settings.issuer})
        state = RegistryState(settings, pool, redis_client, keys, catalog)
        try:
            yield state
        finally:
            await state.refreshes.aclose()
    finally:
        await redis_client.aclose()
        await pool.close()


async def refuse_rls_bypass(pool: Pool, settings: RegistrySettings) -> None:
    """In production, refuse to serve as a role row-level security does not bind."""
    reason = await rls_bypass_reason(pool)
    if reason is None:
        return
    message = f"{reason}: connect as the role of REGISTRY_APP_DATABASE_URL"
    if settings.environment == "production":
        raise RuntimeError(message)
    log.warning("row-level security does not bind the registry", extra={"reason": message})


async def reload_keys_forever(state: RegistryState) -> None:
    """Pick up a rotated key, and drop retired ones, without a restart."""
    settings = state.settings
    while True:
        await asyncio.sleep(settings.registry_keys_reload_seconds)
        try:
            loaded = await load_signing_keys(
                state.pool, settings.registry_key_encryption_key, keep_retired_seconds(settings)
            )
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("signing keys not reloaded", extra={"error": type(exc).__name__})
            continue
        if state.keys.replace_with(loaded):
            log.info("signing keys reloaded", extra={"kid": state.keys.kid})


@asynccontextmanager
async def reloading_keys(state: RegistryState) -> AsyncIterator[None]:
    """Reload the signing keys in the background while the app serves."""
    task = asyncio.create_task(reload_keys_forever(state), name="signing-key-reload")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def run_outbox_relay(state: RegistryState) -> AsyncIterator[OutboxRelay | None]:
    """Run the relay that publishes app changes while the app serves (unless turned off)."""
    settings = state.settings
    if not settings.registry_outbox_relay:
        yield None
        return
    relay = OutboxRelay(
        state.pool,
        database_url=settings.registry_listen_database_url or settings.database_url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=settings.registry_apps_topic,
        instance_id=settings.instance_id,
        poll_interval_s=settings.registry_outbox_poll_seconds,
        batch_size=settings.registry_outbox_batch_size,
        security=settings.kafka_security,
    )
    relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


def build_api(settings: RegistrySettings | None = None) -> FastAPI:
    """Build the registry app; resources open in its lifespan, not at import."""
    chosen = settings or RegistrySettings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_state(chosen) as state, reloading_keys(state), run_outbox_relay(state):
            # What start-up built (modules, routes, models: ~110,000 objects) lives as long as
            # the process: out of the collector, a full collection no longer scans it (29 ms
            # each, measured), which showed in the tail of pages and usage series.
            gc.freeze()
            yield {STATE_KEY: state}

    app = FastAPI(
        title="Connected Apps registry",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_exception_handler(OAuthError, oauth_error_response)
    # Added first, so it runs inside the request-context middleware (which names the request).
    app.add_middleware(
        BodyLimitMiddleware,
        form_max_bytes=chosen.registry_form_max_bytes,
        json_max_bytes=chosen.registry_json_max_bytes,
    )
    app.add_middleware(RequestContextMiddleware)
    app.include_router(oauth_router)
    app.include_router(apps_router)
    app.include_router(secrets_router)
    app.include_router(app_keys_router)
    app.include_router(usage_router)
    app.include_router(audit_router)
    app.include_router(me_router)
    install_page(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(state: StateDep) -> JSONResponse:
        """PostgreSQL and Redis both answer."""

        async def check_postgres() -> None:
            await postgres.ping(state.pool)

        async def check_redis() -> None:
            await kit_redis.ping(state.redis)

        results = await run_checks({"postgres": check_postgres, "redis": check_redis})
        ready = all(value == "ok" for value in results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
