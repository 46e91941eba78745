"""Unit tests of a process's token leases with a fake clock: never spent past the window they
were counted in nor under another limit, headers that count the lease, and adaptive sizing."""

from capps_events import RateLimit
from capps_gateway.ratelimit import leased_decision
from capps_gateway.ratelimit_leases import (
    PREFETCH_MAX,
    PREFETCH_MIN,
    AppLease,
    next_prefetch,
    window_end_at,
)

LIMIT = RateLimit(per_minute=1000, per_hour=10_000)
HOUR_START = 1_700_000_000 - 1_700_000_000 % 3600
REDIS_NOW_S = HOUR_START + 600 + 45  # 10 min 45 s into an hour: the minute ends in 15 s
SENT_AT = 500.0  # the local monotonic clock when the script call was sent


def granted(tokens: int, *, redis_now_us: int = 250_000) -> AppLease:
    lease = AppLease()
    lease.grant(
        LIMIT,
        tokens,
        minute_used=400,
        hour_used=3000,
        sent_at=SENT_AT,
        answered_at=SENT_AT + 0.002,
        redis_now_s=REDIS_NOW_S,
        redis_now_us=redis_now_us,
    )
    return lease


def test_the_window_ends_locally_no_later_than_redis_says_counted_from_the_send() -> None:
    # Redis read 45.25 s into the minute: 14.75 s left, counted from the send, not the answer.
    assert window_end_at(SENT_AT, REDIS_NOW_S, 250_000, 60) == SENT_AT + 14.75
    assert window_end_at(SENT_AT, REDIS_NOW_S, 250_000, 3600) == SENT_AT + 3600 - 645.25


def test_a_lease_is_spent_until_its_window_could_end_and_never_after() -> None:
    lease = granted(5)
    assert lease.take(LIMIT, SENT_AT + 14.74)
    assert not lease.take(LIMIT, SENT_AT + 14.75)
    # Its tokens are void for good, and said so for the next round trip.
    assert lease.tokens == 0
    assert not lease.take(LIMIT, SENT_AT + 1)
    assert lease.before_round_trip(SENT_AT + 14.8, grow_within_s=0.1, most=PREFETCH_MAX) == 4


def test_a_lease_is_dropped_when_the_apps_limit_changes() -> None:
    lease = granted(5)
    assert lease.take(LIMIT, SENT_AT + 1)
    lowered = RateLimit(per_minute=10, per_hour=10_000)
    assert not lease.take(lowered, SENT_AT + 1)
    assert not lease.take(LIMIT, SENT_AT + 1)
    assert lease.unused == 4
    # An equal limit from a newer state (another object) keeps the lease.
    again = granted(2)
    assert again.take(RateLimit(per_minute=1000, per_hour=10_000), SENT_AT + 1)


def test_headers_of_leased_calls_count_the_unspent_lease_as_headroom() -> None:
    lease = granted(3)
    now = SENT_AT + 0.5
    found = []
    while lease.take(LIMIT, now):
        found.append(leased_decision(lease, LIMIT, now))
    assert [d.allowed for d in found] == [True] * 3
    # 400 counted at the grant (lease included): 600 left, then 3 tokens spent one by one.
    assert [d.minute_remaining for d in found] == [602, 601, 600]
    assert [d.hour_remaining for d in found] == [7002, 7001, 7000]
    assert {d.minute_reset_s for d in found} == {15}
    assert dict(found[-1].headers())[b"ratelimit"] == b'"minute";r=600;t=15, "hour";r=7000;t=2955'


def test_an_app_calling_rarely_keeps_no_lease() -> None:
    prefetch = 0
    for _ in range(10):
        prefetch = next_prefetch(prefetch, lasted_s=0.3, wasted=False)
    assert prefetch == 0


def test_a_hot_app_doubles_its_lease_up_to_the_bound() -> None:
    sizes = [0]
    for _ in range(14):
        sizes.append(next_prefetch(sizes[-1], lasted_s=0.01, wasted=False))
    assert sizes[:5] == [0, PREFETCH_MIN, 2 * PREFETCH_MIN, 4 * PREFETCH_MIN, 8 * PREFETCH_MIN]
    assert max(sizes) == sizes[-1] == PREFETCH_MAX
    assert next_prefetch(64, lasted_s=0.01, wasted=False, most=100) == 100
    assert next_prefetch(64, lasted_s=0.01, wasted=False, most=0) == 0


def test_a_cooling_app_halves_per_second_a_budget_lasts_and_when_tokens_go_unused() -> None:
    assert next_prefetch(1024, lasted_s=0.5, wasted=False) == 1024
    assert next_prefetch(1024, lasted_s=1.2, wasted=False) == 512
    assert next_prefetch(1024, lasted_s=3.5, wasted=False) == 128
    assert next_prefetch(1024, lasted_s=0.01, wasted=True) == 512
    assert next_prefetch(PREFETCH_MAX, lasted_s=float("inf"), wasted=False) == 0


def test_sizing_follows_the_round_trips_of_an_app_by_the_clock() -> None:
    lease = AppLease()
    # The first round trip of an app knows nothing of it: no lease.
    assert lease.before_round_trip(SENT_AT, grow_within_s=0.1, most=PREFETCH_MAX) == 0
    assert lease.prefetch == 0
    lease.grant(
        LIMIT,
        0,
        minute_used=1,
        hour_used=1,
        sent_at=SENT_AT,
        answered_at=SENT_AT + 0.001,
        redis_now_s=REDIS_NOW_S,
        redis_now_us=0,
    )
    lease.before_round_trip(SENT_AT + 0.05, grow_within_s=0.1, most=PREFETCH_MAX)
    assert lease.prefetch == PREFETCH_MIN


def test_a_lease_asks_for_a_refill_when_a_quarter_is_left_and_only_once() -> None:
    lease = granted(5)
    lease.prefetch = 16
    wanted = [lease.wants_refill]
    assert lease.take(LIMIT, SENT_AT + 1)
    wanted.append(lease.wants_refill)  # 4 of 16 left
    lease.refilling = True
    wanted.append(lease.wants_refill)
    assert wanted == [False, True, False]


def test_a_refill_in_the_same_window_adds_to_what_is_left() -> None:
    lease = granted(5)
    assert lease.take(LIMIT, SENT_AT + 1)
    lease.refilling = True
    lease.grant(
        LIMIT,
        10,
        minute_used=450,
        hour_used=3050,
        sent_at=SENT_AT + 2,
        answered_at=SENT_AT + 2.001,
        redis_now_s=REDIS_NOW_S + 2,
        redis_now_us=0,
    )
    assert (lease.tokens, lease.unused, lease.refilling) == (14, 0, False)
    # The window's end stays the earlier, conservative one; headers use the newer count.
    assert lease.minute_ends_at == SENT_AT + 14.75
    assert lease.remaining(LIMIT, SENT_AT + 3)[:2] == (1000 - 450 + 14, 10_000 - 3050 + 14)


def test_a_grant_in_a_new_window_replaces_the_tokens_of_the_old_one() -> None:
    lease = granted(5)
    lease.grant(
        LIMIT,
        10,
        minute_used=10,
        hour_used=3100,
        sent_at=SENT_AT + 15,
        answered_at=SENT_AT + 15.001,
        redis_now_s=REDIS_NOW_S + 15,  # the next minute, 0 s into it
        redis_now_us=0,
    )
    assert (lease.tokens, lease.unused) == (10, 5)
    assert lease.minute_ends_at == SENT_AT + 15 + 60
