"""Per-app call limits per minute and per hour, exact across every gateway process via Redis.

Checks of concurrent calls are batched: while one script call is in flight, the checks that
arrive queue up and go together in the next one, so Redis sees one round trip per batch (a lone
call waits one round trip, a burst of hundreds shares it). The script admits, per app, as many
of the batch's calls as both windows have room for, atomically: however many gateways ask at
once, no window admits more than the limit, and a burst gets the whole limit admitted.
Windows are fixed UTC minutes and hours by Redis's clock (key layout: `capps_usage.ratelimit`).

When Redis does not answer, each process limits alone at `limit // fallback_processes`
(the number of gateway processes sharing the limit), so the total stays at most the limit;
the state shows in `capps_gateway_ratelimit_fallback` and `/readyz`, and a background ping
switches back as soon as Redis answers.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from capps_events import RateLimit
from capps_gateway import metrics
from capps_usage.ratelimit import GRACE_S, KEY_PREFIX, WINDOWS, window_start

log = logging.getLogger(__name__)

MINUTE_S = WINDOWS["minute"]
HOUR_S = WINDOWS["hour"]
PROBE_INTERVAL_S = 1.0

# ARGV: key prefix, grace seconds, then per app: app id, calls wanted, per minute, per hour.
# Returns Redis's clock (epoch s) then per app: granted, used this minute, used this hour.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local minute = now - now % 60
local hour = now - now % 3600
local grace = tonumber(ARGV[2])
local out = {now}
for i = 3, #ARGV, 4 do
  local app = ARGV[i]
  local want = tonumber(ARGV[i + 1])
  local per_minute = tonumber(ARGV[i + 2])
  local per_hour = tonumber(ARGV[i + 3])
  local mkey = ARGV[1] .. app .. ':minute:' .. minute
  local hkey = ARGV[1] .. app .. ':hour:' .. hour
  local mused = tonumber(redis.call('GET', mkey) or '0')
  local hused = tonumber(redis.call('GET', hkey) or '0')
  local grant = math.min(want, per_minute - mused, per_hour - hused)
  if grant < 0 then grant = 0 end
  if grant > 0 then
    mused = redis.call('INCRBY', mkey, grant)
    redis.call('EXPIRE', mkey, 60 + grace)
    hused = redis.call('INCRBY', hkey, grant)
    redis.call('EXPIRE', hkey, 3600 + grace)
  end
  out[#out + 1] = grant
  out[#out + 1] = mused
  out[#out + 1] = hused
end
return out
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether one call is admitted, and what its RateLimit headers say."""

    allowed: bool
    limit: RateLimit
    minute_remaining: int
    hour_remaining: int
    minute_reset_s: int
    hour_reset_s: int

    @property
    def retry_after_s(self) -> int:
        """Seconds until a refused call could pass: the reset of the exhausted window (an hour
        always ends at the end of a minute, so an exhausted hour is the later one)."""
        return self.hour_reset_s if self.hour_remaining <= 0 else self.minute_reset_s

    def headers(self) -> list[tuple[bytes, bytes]]:
        """IETF RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers), and
        Retry-After on a refusal."""
        limit = self.limit
        policy = b'"minute";q=%d;w=%d, "hour";q=%d;w=%d' % (
            limit.per_minute,
            MINUTE_S,
            limit.per_hour,
            HOUR_S,
        )
        state = b'"minute";r=%d;t=%d, "hour";r=%d;t=%d' % (
            max(self.minute_remaining, 0),
            self.minute_reset_s,
            max(self.hour_remaining, 0),
            self.hour_reset_s,
        )
        found = [(b"ratelimit-policy", policy), (b"ratelimit", state)]
        if not self.allowed:
            found.append((b"retry-after", b"%d" % self.retry_after_s))
        return found


def decisions(
    limit: RateLimit, *, wanted: int, granted: int, minute_used: int, hour_used: int, now_s: int
) -> list[Decision]:
    """The decisions of `wanted` calls of which the first `granted` were admitted.

    `minute_used` and `hour_used` count the window after the grant; each admitted call sees the
    headroom left right after it, each refused one none.
    """
    minute_reset = window_start(now_s, MINUTE_S) + MINUTE_S - now_s
    hour_reset = window_start(now_s, HOUR_S) + HOUR_S - now_s
    minute_left = limit.per_minute - minute_used
    hour_left = limit.per_hour - hour_used
    found: list[Decision] = []
    for n in range(wanted):
        admitted = n < granted
        behind = granted - n - 1 if admitted else 0
        found.append(
            Decision(
                allowed=admitted,
                limit=limit,
                minute_remaining=minute_left + behind,
                hour_remaining=hour_left + behind,
                minute_reset_s=minute_reset,
                hour_reset_s=hour_reset,
            )
        )
    return found


@dataclass(slots=True)
class LocalLimiter:
    """Fixed windows counted in this process alone: the fallback while Redis is away."""

    share: int
    """How many processes share each app's limit: each admits at most limit // share."""
    _used: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def check(self, app_id: str, limit: RateLimit, now_s: int) -> Decision:
        """Admit one call if both of this process's windows have room."""
        local = RateLimit(
            per_minute=max(limit.per_minute // self.share, 1),
            per_hour=max(limit.per_hour // self.share, 1),
        )
        minute_key = (app_id, "minute", window_start(now_s, MINUTE_S))
        hour_key = (app_id, "hour", window_start(now_s, HOUR_S))
        if len(self._used) > 100_000:
            self._forget_before(now_s)
        minute_used = self._used.get(minute_key, 0)
        hour_used = self._used.get(hour_key, 0)
        granted = int(minute_used < local.per_minute and hour_used < local.per_hour)
        if granted:
            minute_used = self._used[minute_key] = minute_used + 1
            hour_used = self._used[hour_key] = hour_used + 1
        return decisions(
            local,
            wanted=1,
            granted=granted,
            minute_used=minute_used,
            hour_used=hour_used,
            now_s=now_s,
        )[0]

    def _forget_before(self, now_s: int) -> None:
        hour = window_start(now_s, HOUR_S)
        self._used = {key: n for key, n in self._used.items() if key[2] >= hour}


@dataclass(slots=True)
class _Waiting:
    limit: RateLimit
    futures: list["asyncio.Future[Decision]"]


class RateLimiter:
    """Batches the checks of concurrent calls into one Redis script call at a time."""

    def __init__(self, redis: Any, *, fallback_share: int, timeout_s: float = 0.25) -> None:
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)
        self._fallback = LocalLimiter(fallback_share)
        self._timeout_s = timeout_s
        self._waiting: dict[str, _Waiting] = {}
        self._batcher: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self.redis_error: str | None = None
        """Why Redis is not used right now (None: it is)."""
        metrics.track(metrics.RATELIMIT_FALLBACK, lambda: 0 if self.redis_error is None else 1)

    async def check(self, app_id: str, limit: RateLimit) -> Decision:
        """Admit or refuse one call of the app, and the headroom left."""
        if self.redis_error is not None:
            metrics.RATELIMIT_CHECKS.labels("local").inc()
            return self._fallback.check(app_id, limit, int(time.time()))
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(app_id)
        if waiting is None:
            self._waiting[app_id] = _Waiting(limit, [future])
        else:
            # The newest state's limit wins for everything queued with it.
            waiting.limit = limit
            waiting.futures.append(future)
        if self._batcher is None:
            self._batcher = asyncio.create_task(self._send_batches(), name="ratelimit-batches")
        return await future

    async def close(self) -> None:
        """Stop the probe; queued checks are answered first."""
        for task in (self._batcher, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._redis.aclose()

    async def _send_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                await self._decide(batch)
        finally:
            self._batcher = None

    async def _decide(self, batch: dict[str, _Waiting]) -> None:
        args: list[Any] = [KEY_PREFIX, GRACE_S]
        for app_id, waiting in batch.items():
            args += [app_id, len(waiting.futures), waiting.limit.per_minute, waiting.limit.per_hour]
        metrics.RATELIMIT_ROUND_TRIPS.inc()
        try:
            # A timeout scope, not wait_for: no extra task and loop turn per round trip.
            async with asyncio.timeout(self._timeout_s):
                reply = await self._script(args=args)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: the local fallback decides
            self._fall_back(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            now_s = int(time.time())
            for app_id, waiting in batch.items():
                for future in waiting.futures:
                    if not future.done():
                        metrics.RATELIMIT_CHECKS.labels("local").inc()
                        future.set_result(self._fallback.check(app_id, waiting.limit, now_s))
            return
        now_s = int(reply[0])
        for index, (_, waiting) in enumerate(batch.items()):
            granted, minute_used, hour_used = (int(v) for v in reply[1 + 3 * index : 4 + 3 * index])
            wanted = len(waiting.futures)
            metrics.RATELIMIT_CHECKS.labels("redis").inc(wanted)
            found = decisions(
                waiting.limit,
                wanted=wanted,
                granted=granted,
                minute_used=minute_used,
                hour_used=hour_used,
                now_s=now_s,
            )
            for future, decision in zip(waiting.futures, found, strict=True):
                if not future.done():
                    future.set_result(decision)

    def _fall_back(self, reason: str) -> None:
        if self.redis_error is None:
            log.error(
                "Redis not answering: rate limits fall back to this process alone",
                extra={"reason": reason, "share": self._fallback.share},
            )
        self.redis_error = reason
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_until_back(), name="ratelimit-probe")

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            try:
                await asyncio.wait_for(self._redis.ping(), self._timeout_s)
            except Exception as exc:  # noqa: BLE001 - still away
                self.redis_error = (
                    f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                )
                continue
            log.info("Redis answers again: rate limits are shared again")
            self.redis_error = None
            return
