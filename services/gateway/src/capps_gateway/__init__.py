"""The API gateway: checks tokens and permissions, proxies calls, emits one event per call."""
