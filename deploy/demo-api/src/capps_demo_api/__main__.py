"""`python -m capps_demo_api`: serve the demo platform API with uvicorn (uvloop, httptools)."""

import os

import uvicorn

from capps_demo_api.app import DemoApi


def main() -> None:
    """Listen on DEMO_API_HOST:DEMO_API_PORT (default 127.0.0.1:8090)."""
    uvicorn.run(
        DemoApi(),
        host=os.environ.get("DEMO_API_HOST", "127.0.0.1"),
        port=int(os.environ.get("DEMO_API_PORT", "8090")),
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        # uvicorn's default (5 s) is shorter than aiohttp's pooled-connection idle time (15 s):
        # the API then closes connections a client may be writing its next request to. An API
        # behind a proxy keeps connections open longer than the proxy does (the gateway: 3 s).
        timeout_keep_alive=75,
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
    )


if __name__ == "__main__":
    main()
