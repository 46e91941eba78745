"""Redis: the running server when there is one, else redis-server with data in the state dir."""

from __future__ import annotations

import shutil

from .config import HOST, urls
from .part import Part
from .process import redis_ping, say


class Redis(Part):
    """Redis: the running server when there is one, else redis-server with its data in .local."""

    name = "redis"

    @property
    def port(self) -> int:
        return self.ctx.ports.redis

    @property
    def address(self) -> str:
        return urls(self.ctx.ports)["REDIS_URL"]

    def what(self) -> str:
        return f"PING on {HOST}:{self.port}"

    def healthy(self) -> bool:
        return redis_ping(self.port)

    def launch(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            self.ctx.apt_install(["redis-server"], "Redis is not installed")
            if self.foreign():
                say(f"  redis: the packaged server now answers on {self.port}; using it")
                return
            binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        data = self.ctx.local / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.spawn(
            [
                binary,
                "--bind",
                HOST,
                "--port",
                str(self.port),
                "--dir",
                str(data),
                "--daemonize",
                "no",
                "--save",
                "60 1000",
                # Append-only persistence: a restarted Redis comes back with its counters and
                # the completeness marker instead of empty (the aggregator would rebuild it).
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--pidfile",
                str(data / "redis-server.pid"),
            ],
            cwd=data,
        )
