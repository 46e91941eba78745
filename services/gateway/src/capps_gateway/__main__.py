"""`python -m capps_gateway`: the proxy and its admin endpoint.

One process (`GATEWAY_WORKERS=1`) serves both in one loop; more run as worker processes behind
one port under a supervisor (workers.py).
"""

import uvloop

from capps_gateway.server import serve
from capps_gateway.settings import GatewaySettings
from capps_gateway.workers import supervise
from capps_kit.logging import configure_logging


def main() -> None:
    """Read settings, configure JSON logging; serve in this process or supervise workers."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    if settings.gateway_workers > 1:
        supervise(settings)
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
