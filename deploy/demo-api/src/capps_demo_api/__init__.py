"""The demo platform API: a raw ASGI app answering the catalog's routes with plausible JSON."""

from capps_demo_api.app import DemoApi

__all__ = ["DemoApi"]
