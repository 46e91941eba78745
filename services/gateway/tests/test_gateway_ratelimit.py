"""Unit tests of the rate limit arithmetic: decisions of a batch, headers, the local fallback."""

from capps_events import RateLimit
from capps_gateway.ratelimit import LocalLimiter, decisions

LIMIT = RateLimit(per_minute=10, per_hour=100)
NOW = 1_700_000_000 - 1_700_000_000 % 3600 + 600 + 45  # 10 min 45 s into an hour


def test_a_batch_admits_the_granted_first_and_counts_down_their_headroom() -> None:
    found = decisions(LIMIT, wanted=5, granted=3, minute_used=10, hour_used=40, now_s=NOW)
    assert [d.allowed for d in found] == [True, True, True, False, False]
    assert [d.minute_remaining for d in found] == [2, 1, 0, 0, 0]
    assert [d.hour_remaining for d in found] == [62, 61, 60, 60, 60]
    assert found[0].minute_reset_s == 15
    assert found[0].hour_reset_s == 3600 - 645


def test_headers_follow_the_ietf_draft_and_a_refusal_says_when_to_retry() -> None:
    admitted, refused = decisions(
        LIMIT, wanted=2, granted=1, minute_used=10, hour_used=20, now_s=NOW
    )
    headers = dict(admitted.headers())
    assert headers[b"ratelimit-policy"] == b'"minute";q=10;w=60, "hour";q=100;w=3600'
    assert headers[b"ratelimit"] == b'"minute";r=0;t=15, "hour";r=80;t=2955'
    assert b"retry-after" not in headers
    assert dict(refused.headers())[b"retry-after"] == b"15"


def test_an_exhausted_hour_means_waiting_for_the_hour() -> None:
    [refused] = decisions(LIMIT, wanted=1, granted=0, minute_used=3, hour_used=100, now_s=NOW)
    assert not refused.allowed
    assert refused.retry_after_s == 3600 - 645


def test_the_fallback_admits_its_share_per_window_and_starts_over_in_the_next() -> None:
    limiter = LocalLimiter(share=2)
    minute = [limiter.check("app", LIMIT, NOW).allowed for _ in range(8)]
    assert minute == [True] * 5 + [False] * 3
    assert limiter.check("app", LIMIT, NOW + 15).allowed
    assert limiter.check("other", LIMIT, NOW).allowed
