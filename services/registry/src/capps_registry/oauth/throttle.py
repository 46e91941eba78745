"""Failed client authentication, limited per client id and per source address.

A sliding log per subject (a Redis sorted set of failure times): at most N failures in any
60 seconds, exactly, wherever minute boundaries fall. A caller over either limit is locked out
for a full window from its first refused attempt and answered 429 with Retry-After before any
lookup or hashing, whether its next secret would be right or not.
If Redis does not answer, authentication goes on unthrottled (logged): the limiter guards
against guessing, it must not take the token endpoint down with it.
"""

import logging
import math
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

WINDOW_S = 60
_PREFIX = "capps:registry:authfail"


@dataclass(frozen=True, slots=True)
class FailureLimits:
    """Failed attempts allowed in any window, per client id and per source address."""

    per_client: int
    per_address: int


def failure_keys(client_id: str | None, address: str) -> list[str]:
    """The failure logs: the address's, and the client id's when there is one."""
    keys = [f"{_PREFIX}:addr:{address}"]
    if client_id:
        keys.append(f"{_PREFIX}:client:{client_id}")
    return keys


def lockout_keys(client_id: str | None, address: str) -> list[str]:
    """The lockouts matching `failure_keys`: the address's, and the client id's."""
    keys = [f"{_PREFIX}:locked:addr:{address}"]
    if client_id:
        keys.append(f"{_PREFIX}:locked:client:{client_id}")
    return keys


def seconds_left(locked_until: float, now: float) -> int:
    """Whole seconds until a lockout ends (at least 1)."""
    return max(1, math.ceil(locked_until - now))


async def over_limit(
    client: "redis.Redis", limits: FailureLimits, client_id: str | None, address: str
) -> int | None:
    """Retry-After seconds if the address or the client id is over its limit, else None."""
    now = time.time()
    logs = failure_keys(client_id, address)
    locks = lockout_keys(client_id, address)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.mget(locks)
        for key in logs:
            pipe.zcount(key, now - WINDOW_S, "+inf")
        lock_values, *counts = await pipe.execute()
        locked = [float(until) for until in lock_values if until is not None]
        if locked:
            return seconds_left(max(locked), now)
        caps = [limits.per_address, limits.per_client][: len(logs)]
        over = [
            lock for count, cap, lock in zip(counts, caps, locks, strict=True) if int(count) >= cap
        ]
        if not over:
            return None
        pipe = client.pipeline(transaction=False)
        for lock in over:
            pipe.set(lock, repr(now + WINDOW_S), ex=WINDOW_S, nx=True)
        await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("auth failure limiter unavailable", extra={"error": type(exc).__name__})
        return None
    return WINDOW_S


async def record_failure(client: "redis.Redis", client_id: str | None, address: str) -> None:
    """Log one failed authentication, forgetting those older than a window."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for key in failure_keys(client_id, address):
        # A unique member per failure: two at the same instant both count.
        pipe.zadd(key, {f"{now!r}:{uuid.uuid4().hex[:8]}": now})
        pipe.zremrangebyscore(key, "-inf", now - WINDOW_S)
        pipe.expire(key, WINDOW_S)
    try:
        await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("auth failure limiter unavailable", extra={"error": type(exc).__name__})
