"""`python -m capps_gateway`: the proxy and its admin endpoint in one process and one loop."""

import asyncio
import contextlib
import logging

import uvicorn
import uvloop

from capps_catalog import load_catalog
from capps_gateway.app import GatewayApp
from capps_gateway.auth.issuers import IssuerConfigError
from capps_gateway.edge import guarded_protocol
from capps_gateway.settings import GatewaySettings
from capps_kit.health import serve_admin
from capps_kit.logging import configure_logging

log = logging.getLogger("capps_gateway")


async def serve(settings: GatewaySettings) -> None:
    """Run the proxy until SIGINT/SIGTERM; the admin server lives and dies with it."""
    app = GatewayApp(settings, load_catalog(settings.catalog_path))
    config = uvicorn.Config(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        http=guarded_protocol(
            max_header_bytes=settings.gateway_max_header_bytes,
            header_timeout_s=settings.gateway_header_timeout_s,
            body_timeout_s=settings.gateway_body_timeout_s,
        ),
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # The gateway never reads the client address; skipping X-Forwarded-* rewriting saves
        # a middleware hop on every call.
        proxy_headers=False,
        # Callers hold keep-alive connections; a long idle timeout avoids reconnect storms.
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    admin = asyncio.create_task(
        serve_admin(app.admin, settings.gateway_host, settings.gateway_admin_port), name="admin"
    )
    log.info(
        "gateway starting",
        extra={
            "host": settings.gateway_host,
            "port": settings.gateway_port,
            "upstream": settings.gateway_upstream_url,
            "topic": settings.gateway_events_topic,
        },
    )
    try:
        await server.serve()
    finally:
        admin.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await admin


def main() -> None:
    """Read settings, configure JSON logging and serve on uvloop."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    try:
        uvloop.run(serve(settings))
    except IssuerConfigError as exc:
        log.error(  # noqa: TRY400 - the message says it all; a traceback would only bury it
            "invalid issuers file, not starting", extra={"reason": str(exc)}
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
