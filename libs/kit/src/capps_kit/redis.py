"""The one way services open Redis: a pooled asyncio client from `REDIS_URL`."""

import redis.asyncio as redis


def create_redis(redis_url: str) -> "redis.Redis":
    """A client whose replies are bytes; callers decode what they need."""
    return redis.Redis.from_url(redis_url, health_check_interval=30)


async def ping(client: "redis.Redis") -> None:
    """Raise unless Redis answers PING."""
    await client.ping()
