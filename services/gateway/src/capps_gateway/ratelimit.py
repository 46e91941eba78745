"""Per-app call limits per minute and per hour, exact across every gateway process via Redis.

Windows are fixed UTC minutes and hours by Redis's clock (key layout: `capps_usage.ratelimit`).
One Lua script admits, per app, as many waiting calls as both windows have room for and
increments both counters atomically: however many gateways ask at once, no window's counter
exceeds the limit, and a burst gets the whole limit admitted.

Checks of concurrent calls are batched: while one script call is in flight, the checks that
arrive queue up and go together in the next one (a lone call waits one round trip, a burst of
hundreds shares it).

On top, each process leases tokens per app (`ratelimit_leases`): with the waiting calls, the
script grants a lease of up to `prefetch` more tokens, never more than 1/LEASE_SHARE of the room
left after them (the process's own unspent tokens counted as left), counted in Redis at once.
Later checks of the app spend the lease in process, synchronously (no future, no task, no round
trip), while its minute window surely lasts by the local monotonic clock; when a quarter of the
lease's size is left, a refill is asked for in the background (a batch entry without waiting
calls), so a hot app's calls rarely wait for Redis. A lease is never spent after its window
could have ended nor under a changed limit, so no window admits more than the limit. The lease
size adapts per app: an app whose round trips come less than 0.1 s apart doubles it (up to
`lease_max`), one whose budgets last halves it per second, so an app calling less often than
that here keeps no lease and gets exact headers, one round trip per call as before. Tokens
leased and not spent before the window ends are lost for that window (counted, never admitted:
conservative), at most 1/LEASE_SHARE of the room per process. The RateLimit headers of a call
served from a lease count this process's unspent lease as available (`limit - counted at the
grant + tokens still leased here`).

When Redis does not answer, each process limits alone at `limit // fallback_processes`
(the number of gateway processes sharing the limit), so the total stays at most the limit;
a still-valid lease is spent first (its tokens are counted already). The state shows in
`capps_gateway_ratelimit_fallback` and `/readyz`, and a background ping switches back as soon
as Redis answers. `capps_gateway_ratelimit_checks_total{source}` says who decided: `lease`,
`redis` or `local`.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from capps_events import RateLimit
from capps_gateway import metrics
from capps_gateway.ratelimit_leases import GROW_WITHIN_S, LEASE_SHARE, PREFETCH_MAX, AppLease
from capps_usage.ratelimit import GRACE_S, KEY_PREFIX, WINDOWS, window_start

log = logging.getLogger(__name__)

MINUTE_S = WINDOWS["minute"]
HOUR_S = WINDOWS["hour"]
PROBE_INTERVAL_S = 1.0
LEASES_KEPT = 10_000
"""Past this many apps' lease entries, entries older than any window are forgotten (their
next lease would be none anyway)."""

# ARGV: key prefix, grace seconds, lease share, then per app: app id, calls waiting, tokens to
# lease on top, tokens this process still holds, per minute, per hour. Returns Redis's clock
# (epoch s, µs) then per app: granted, leased, used this minute, used this hour (after both).
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local minute = now - now % 60
local hour = now - now % 3600
local grace = tonumber(ARGV[2])
local share = tonumber(ARGV[3])
local out = {now, tonumber(t[2])}
for i = 4, #ARGV, 6 do
  local app = ARGV[i]
  local want = tonumber(ARGV[i + 1])
  local prefetch = tonumber(ARGV[i + 2])
  local held = tonumber(ARGV[i + 3])
  local per_minute = tonumber(ARGV[i + 4])
  local per_hour = tonumber(ARGV[i + 5])
  local mkey = ARGV[1] .. app .. ':minute:' .. minute
  local hkey = ARGV[1] .. app .. ':hour:' .. hour
  local mused = tonumber(redis.call('GET', mkey) or '0')
  local hused = tonumber(redis.call('GET', hkey) or '0')
  local room = math.min(per_minute - mused, per_hour - hused)
  if room < 0 then room = 0 end
  local grant = math.min(want, room)
  -- What the process holds, with this lease, stays within 1/share of what is left (its own
  -- unspent tokens counted as left).
  local lease = math.min(prefetch, math.floor((room - grant + held) / share) - held)
  if lease < 0 then lease = 0 end
  local take = grant + lease
  if take > 0 then
    mused = redis.call('INCRBY', mkey, take)
    redis.call('EXPIRE', mkey, 60 + grace)
    hused = redis.call('INCRBY', hkey, take)
    redis.call('EXPIRE', hkey, 3600 + grace)
  end
  out[#out + 1] = grant
  out[#out + 1] = lease
  out[#out + 1] = mused
  out[#out + 1] = hused
end
return out
"""


class Decision(msgspec.Struct, frozen=True, gc=False):
    """Whether one call is admitted, and what its RateLimit headers say.

    A frozen msgspec Struct: one is built per call, ~5 times faster than a frozen dataclass.
    """

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


_LEASE_CHECKS = metrics.RATELIMIT_CHECKS.labels("lease")
_REDIS_CHECKS = metrics.RATELIMIT_CHECKS.labels("redis")
_LOCAL_CHECKS = metrics.RATELIMIT_CHECKS.labels("local")


def leased_decision(lease: AppLease, limit: RateLimit, now: float) -> Decision:
    """The decision of a call just served from `lease`."""
    minute_left, hour_left, minute_reset, hour_reset = lease.remaining(limit, now)
    return Decision(
        allowed=True,
        limit=limit,
        minute_remaining=minute_left,
        hour_remaining=hour_left,
        minute_reset_s=minute_reset,
        hour_reset_s=hour_reset,
    )


class RateLimiter:
    """Serves checks from this process's leases, and batches the others into one Redis script
    call at a time."""

    def __init__(
        self,
        redis: Any,
        *,
        fallback_share: int,
        timeout_s: float = 0.25,
        lease_max: int = PREFETCH_MAX,
        grow_within_s: float = GROW_WITHIN_S,
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)
        self._fallback = LocalLimiter(fallback_share)
        self._timeout_s = timeout_s
        self._lease_max = lease_max
        self._grow_within_s = grow_within_s
        self._leases: dict[str, AppLease] = {}
        self._forget_at = LEASES_KEPT
        self._waiting: dict[str, _Waiting] = {}
        self._batcher: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self.redis_error: str | None = None
        """Why Redis is not used right now (None: it is)."""
        metrics.track(metrics.RATELIMIT_FALLBACK, lambda: 0 if self.redis_error is None else 1)

    async def check(self, app_id: str, limit: RateLimit) -> Decision:
        """Admit or refuse one call of the app, and the headroom left."""
        now = time.monotonic()
        lease = self._leases.get(app_id)
        if lease is not None and lease.take(limit, now):
            # The hot path: no round trip, no future, no task (but a refill now and then).
            _LEASE_CHECKS.inc()
            if lease.wants_refill and self.redis_error is None:
                self._refill(app_id, limit, lease, now)
            return leased_decision(lease, limit, now)
        if self.redis_error is not None:
            _LOCAL_CHECKS.inc()
            return self._fallback.check(app_id, limit, int(time.time()))
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(app_id)
        if waiting is None:
            if lease is not None:
                self._size_next_lease(lease, now)
            self._queue(app_id, _Waiting(limit, [future]))
        else:
            # The newest state's limit wins for everything queued with it.
            waiting.limit = limit
            waiting.futures.append(future)
        return await future

    def _refill(self, app_id: str, limit: RateLimit, lease: AppLease, now: float) -> None:
        """Queue a round trip for more of the app's tokens, without a waiting call."""
        if app_id in self._waiting:
            return
        lease.refilling = True
        self._size_next_lease(lease, now)
        self._queue(app_id, _Waiting(limit, []))

    def _size_next_lease(self, lease: AppLease, now: float) -> None:
        unused = lease.before_round_trip(
            now, grow_within_s=self._grow_within_s, most=self._lease_max
        )
        if unused:
            metrics.RATELIMIT_LEASE_UNUSED.inc(unused)

    def _queue(self, app_id: str, waiting: _Waiting) -> None:
        """Put the app's checks in the next batch; start the batcher if it is idle."""
        self._waiting[app_id] = waiting
        if self._batcher is None:
            self._batcher = asyncio.create_task(self._send_batches(), name="ratelimit-batches")

    def leased_tokens(self, app_id: str) -> int:
        """The tokens of the app this process holds unspent."""
        lease = self._leases.get(app_id)
        return 0 if lease is None else lease.tokens

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
                self._serve_from_leases(batch)
                if batch:
                    await self._decide(batch)
        finally:
            self._batcher = None

    def _serve_from_leases(self, batch: dict[str, _Waiting]) -> None:
        """Answer calls that queued while their app's lease was on its way from that lease."""
        now = time.monotonic()
        for app_id, waiting in list(batch.items()):
            lease = self._leases.get(app_id)
            if lease is None or not lease.tokens or not waiting.futures:
                continue
            served = 0
            for future in waiting.futures:
                if not future.done():
                    if not lease.take(waiting.limit, now):
                        break
                    _LEASE_CHECKS.inc()
                    future.set_result(leased_decision(lease, waiting.limit, now))
                served += 1
            del waiting.futures[:served]
            if not waiting.futures and not lease.refilling:
                del batch[app_id]

    async def _decide(self, batch: dict[str, _Waiting]) -> None:
        args: list[Any] = [KEY_PREFIX, GRACE_S, LEASE_SHARE]
        for app_id, waiting in batch.items():
            lease = self._leases.get(app_id)
            args += [
                app_id,
                len(waiting.futures),
                0 if lease is None else lease.prefetch,
                0 if lease is None else lease.tokens,
                waiting.limit.per_minute,
                waiting.limit.per_hour,
            ]
        metrics.RATELIMIT_ROUND_TRIPS.inc()
        sent_at = time.monotonic()
        try:
            # A timeout scope, not wait_for: no extra task and loop turn per round trip.
            async with asyncio.timeout(self._timeout_s):
                reply = await self._script(args=args)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: the local fallback decides
            self._fall_back(_reason(exc))
            now_s = int(time.time())
            for app_id, waiting in batch.items():
                if (lease := self._leases.get(app_id)) is not None:
                    lease.refilling = False
                for future in waiting.futures:
                    if not future.done():
                        _LOCAL_CHECKS.inc()
                        future.set_result(self._fallback.check(app_id, waiting.limit, now_s))
            return
        answered_at = time.monotonic()
        now_s, now_us = int(reply[0]), int(reply[1])
        for index, (app_id, waiting) in enumerate(batch.items()):
            granted, leased, minute_used, hour_used = (
                int(v) for v in reply[2 + 4 * index : 6 + 4 * index]
            )
            wanted = len(waiting.futures)
            _REDIS_CHECKS.inc(wanted)
            found = decisions(
                waiting.limit,
                wanted=wanted,
                granted=granted,
                # The lease is this process's to spend: its tokens count as headroom here.
                minute_used=minute_used - leased,
                hour_used=hour_used - leased,
                now_s=now_s,
            )
            for future, decision in zip(waiting.futures, found, strict=True):
                if not future.done():
                    future.set_result(decision)
            lease = self._leases.get(app_id)
            if lease is None:
                lease = self._leases[app_id] = AppLease()
            lease.grant(
                waiting.limit,
                leased,
                minute_used=minute_used,
                hour_used=hour_used,
                sent_at=sent_at,
                answered_at=answered_at,
                redis_now_s=now_s,
                redis_now_us=now_us,
            )
        if leased_total := sum(int(v) for v in reply[3::4]):
            metrics.RATELIMIT_LEASED.inc(leased_total)
        if len(self._leases) > self._forget_at:
            self._forget_leases_before(answered_at - MINUTE_S)

    def _forget_leases_before(self, before: float) -> None:
        # An entry granted over a minute ago holds no valid token, and its next lease would be
        # none anyway (each second a budget lasts halves it): forgetting it changes nothing.
        self._leases = {
            app_id: lease for app_id, lease in self._leases.items() if lease.granted_at >= before
        }
        self._forget_at = max(LEASES_KEPT, 2 * len(self._leases))

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
                self.redis_error = _reason(exc)
                continue
            log.info("Redis answers again: rate limits are shared again")
            self.redis_error = None
            return


def _reason(exc: BaseException) -> str:
    """Why Redis failed, as `/readyz` and the log say it."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
