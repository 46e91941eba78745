"""Per-app token leases of one process: tokens taken from the app's Redis windows ahead of its
calls, spent without a round trip while their minute window surely lasts; pure, clock passed in.

A hot app's lease is refilled ahead, when a quarter of its size is left, so its calls rarely
wait for Redis; a refill of the same window and limit adds to what is left.

A lease is spent only while the local monotonic clock is before the end of the minute window the
tokens were counted in, computed conservatively from the moment the request to Redis was sent:
Redis read its clock later than that, so the local end is never after the real one and no window
ever admits more than the limit. A lease is void under another limit than it was taken under
(its tokens stay counted in Redis: conservative). How many tokens to ask for adapts to the
app's demand in this process: none for an app whose next round trip comes more than
`grow_within_s` after the last, doubling while they come faster, halving for each second a
budget lasts and when tokens go unused.
"""

from dataclasses import dataclass
from math import ceil, inf

from capps_events import RateLimit
from capps_usage.ratelimit import WINDOWS, window_start

LEASE_SHARE = 8
"""A lease takes at most 1/LEASE_SHARE of a window's room left after the waiting calls: one
process never holds most of what is left, so a burst on other processes still gets it."""
PREFETCH_MIN = 4
"""The first lease of an app that turned hot."""
PREFETCH_MAX = 4096
GROW_WITHIN_S = 0.1
"""A budget used up faster than this means the app is hot here: ask for twice as much."""
DECAY_EVERY_S = 1.0
"""Each whole second a budget lasted halves the next lease: a cooling app goes back to none."""


def next_prefetch(
    current: int,
    *,
    lasted_s: float,
    wasted: bool,
    grow_within_s: float = GROW_WITHIN_S,
    most: int = PREFETCH_MAX,
) -> int:
    """How many tokens to lease next, given how long the last budget lasted and whether tokens
    of it went unused (expired with its window, or void under a new limit)."""
    if most <= 0:
        return 0
    if lasted_s < grow_within_s and not wasted:
        return min(max(2 * current, PREFETCH_MIN), most)
    halvings = 32 if lasted_s >= 32 * DECAY_EVERY_S else int(lasted_s // DECAY_EVERY_S)
    return current >> (halvings + int(wasted))


def window_end_at(sent_at: float, redis_now_s: int, redis_now_us: int, length_s: int) -> float:
    """The local monotonic time by which the window holding Redis's `now` has surely ended:
    Redis read its clock after `sent_at` (local monotonic), so this is never later than the
    real end."""
    end_s = window_start(redis_now_s, length_s) + length_s
    return sent_at + (end_s - redis_now_s) - redis_now_us / 1e6


@dataclass(slots=True)
class AppLease:
    """One app's leased tokens in this process and the size of its next lease."""

    prefetch: int = 0
    """Tokens to ask for with the app's next round trip."""
    limit: RateLimit | None = None
    """The limit the tokens were granted under."""
    tokens: int = 0
    minute_used: int = 0
    """The minute window's count in Redis right after the grant, this lease included."""
    hour_used: int = 0
    granted_at: float = -inf
    """Local monotonic time the last grant arrived."""
    minute_ends_at: float = -inf
    hour_ends_at: float = -inf
    minute_start_s: int = -1
    """The Redis minute window the tokens were counted in (epoch s)."""
    unused: int = 0
    """Tokens voided since the last round trip (expired or under another limit)."""
    refilling: bool = False
    """A round trip for more tokens is queued or in flight."""

    def take(self, limit: RateLimit, now: float) -> bool:
        """Spend one token if one is left, under `limit`, before its window can have ended."""
        if self.tokens <= 0:
            return False
        if now < self.minute_ends_at and (self.limit is limit or self.limit == limit):
            self.tokens -= 1
            return True
        self.unused += self.tokens
        self.tokens = 0
        return False

    @property
    def wants_refill(self) -> bool:
        """Whether to ask for more now: a quarter of the lease's size or less is left."""
        return not self.refilling and 0 < self.tokens * 4 <= self.prefetch

    def before_round_trip(self, now: float, *, grow_within_s: float, most: int) -> int:
        """Size the next lease as the app needs another round trip; return the tokens voided
        since the last one."""
        unused, self.unused = self.unused, 0
        self.prefetch = next_prefetch(
            self.prefetch,
            lasted_s=now - self.granted_at,
            wasted=unused > 0,
            grow_within_s=grow_within_s,
            most=most,
        )
        return unused

    def grant(
        self,
        limit: RateLimit,
        tokens: int,
        *,
        minute_used: int,
        hour_used: int,
        sent_at: float,
        answered_at: float,
        redis_now_s: int,
        redis_now_us: int,
    ) -> None:
        """Hold the tokens Redis leased with a round trip sent at `sent_at`: added to what is
        left if counted in the same window under the same limit, else instead of it."""
        minute_start = window_start(redis_now_s, WINDOWS["minute"])
        minute_ends_at = window_end_at(sent_at, redis_now_s, redis_now_us, WINDOWS["minute"])
        hour_ends_at = window_end_at(sent_at, redis_now_s, redis_now_us, WINDOWS["hour"])
        if self.tokens and minute_start == self.minute_start_s and self.limit == limit:
            tokens += self.tokens
            minute_ends_at = min(minute_ends_at, self.minute_ends_at)
            hour_ends_at = min(hour_ends_at, self.hour_ends_at)
        else:
            self.unused += self.tokens
        self.limit = limit
        self.tokens = tokens
        self.minute_used = minute_used
        self.hour_used = hour_used
        self.granted_at = answered_at
        self.minute_start_s = minute_start
        self.minute_ends_at = minute_ends_at
        self.hour_ends_at = hour_ends_at
        self.refilling = False

    def remaining(self, limit: RateLimit, now: float) -> tuple[int, int, int, int]:
        """(minute left, hour left, seconds to the minute's reset, to the hour's) as this process
        sees them: Redis's count at the grant, with this lease's unspent tokens still available."""
        return (
            limit.per_minute - self.minute_used + self.tokens,
            limit.per_hour - self.hour_used + self.tokens,
            max(ceil(self.minute_ends_at - now), 1),
            max(ceil(self.hour_ends_at - now), 1),
        )
