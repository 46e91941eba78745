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
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
    )


if __name__ == "__main__":
    main()
