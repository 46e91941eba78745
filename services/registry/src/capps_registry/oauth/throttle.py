"""Failed client authentication, limited per client id and per source address.

Fixed one-minute windows of Redis counters: a caller over either limit is answered 429 with
Retry-After before any lookup or hashing, whether its next secret would be right or not.
If Redis does not answer, authentication goes on unthrottled (logged): the limiter guards
against guessing, it must not take the token endpoint down with it.
"""

import logging
import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

WINDOW_S = 60
_PREFIX = "capps:registry:authfail"


@dataclass(frozen=True, slots=True)
class FailureLimits:
    """Failed attempts allowed per window, per client id and per source address."""

    per_client: int
    per_address: int


def window_keys(client_id: str | None, address: str, now: float) -> list[str]:
    """The counters of this window: the address's, and the client id's when there is one."""
    window = int(now) // WINDOW_S
    keys = [f"{_PREFIX}:addr:{address}:{window}"]
    if client_id:
        keys.append(f"{_PREFIX}:client:{client_id}:{window}")
    return keys


def retry_after(now: float) -> int:
    """Seconds until the current window ends (at least 1)."""
    return max(1, WINDOW_S - int(now) % WINDOW_S)


async def over_limit(
    client: "redis.Redis", limits: FailureLimits, client_id: str | None, address: str
) -> int | None:
    """Retry-After seconds if the address or the client id is over its limit, else None."""
    now = time.time()
    keys = window_keys(client_id, address, now)
    try:
        counts = await client.mget(keys)
    except (RedisError, OSError) as exc:
        log.warning("auth failure limiter unavailable", extra={"error": type(exc).__name__})
        return None
    caps = [limits.per_address, limits.per_client][: len(keys)]
    if any(
        count is not None and int(count) >= cap for count, cap in zip(counts, caps, strict=True)
    ):
        return retry_after(now)
    return None


async def record_failure(client: "redis.Redis", client_id: str | None, address: str) -> None:
    """Count one failed authentication in this window."""
    pipe = client.pipeline(transaction=False)
    for key in window_keys(client_id, address, time.time()):
        pipe.incr(key)
        pipe.expire(key, WINDOW_S * 2)
    try:
        await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("auth failure limiter unavailable", extra={"error": type(exc).__name__})
