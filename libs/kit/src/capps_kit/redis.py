"""The one way services open Redis: a pooled asyncio client from `REDIS_URL`."""

import redis.asyncio as redis


def create_redis(redis_url: str, *, timeout_s: float | None = None) -> "redis.Redis":
    """A client whose replies are bytes; callers decode what they need.

    `timeout_s` bounds connecting and each reply, for callers on a request path.
    """
    return redis.Redis.from_url(
        redis_url,
        health_check_interval=30,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


async def ping(client: "redis.Redis") -> None:
    """Raise unless Redis answers PING."""
    await client.ping()
