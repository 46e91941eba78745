"""`python -m capps_gateway`: the proxy and its admin endpoint.

One process (`GATEWAY_WORKERS=1`) serves both in one loop; more run as worker processes behind
one port under a supervisor (workers.py).
"""

import logging

import uvloop

from capps_gateway.auth.issuers import IssuerConfigError, load_issuers
from capps_gateway.server import serve
from capps_gateway.settings import GatewaySettings
from capps_gateway.workers import supervise
from capps_kit.logging import configure_logging

log = logging.getLogger("capps_gateway")


def main() -> None:
    """Read settings, configure JSON logging; serve in this process or supervise workers."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    try:
        if settings.gateway_issuers_file is not None:
            # Checked here once, so a wrong file stops the gateway before any worker starts.
            load_issuers(settings.gateway_issuers_file, registry_issuer=settings.token_issuer)
        if settings.gateway_workers > 1:
            supervise(settings)
        else:
            uvloop.run(serve(settings))
    except IssuerConfigError as exc:
        log.error(  # noqa: TRY400 - the message says it all; a traceback would only bury it
            "invalid issuers file, not starting", extra={"reason": str(exc)}
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
