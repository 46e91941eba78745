"""Latency histogram buckets of `usage_day.latency_hist` and the quantile read from them.

The writer adds one count per call to the bucket whose upper bound is the first at or above
the call's latency; readers estimate a quantile (a day's p95) by linear interpolation inside
the bucket holding it, as Prometheus' `histogram_quantile` does. Bounds grow by about 1.5x,
so an estimate is within half a bucket of the truth.
"""

import math
from bisect import bisect_left
from collections.abc import Sequence

# Upper bounds in milliseconds; the last bucket (+inf) holds everything slower than 60 s.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1.0,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    50.0,
    75.0,
    100.0,
    150.0,
    200.0,
    300.0,
    500.0,
    750.0,
    1000.0,
    1500.0,
    2000.0,
    3000.0,
    5000.0,
    10000.0,
    30000.0,
    60000.0,
    math.inf,
)
BUCKET_COUNT = len(LATENCY_BUCKETS_MS)
_FINITE_BOUNDS = LATENCY_BUCKETS_MS[:-1]


def bucket_index(latency_ms: float) -> int:
    """The index of the bucket counting a call of `latency_ms` (bounds are inclusive)."""
    return bisect_left(_FINITE_BOUNDS, latency_ms)


def quantile_from_histogram(hist: Sequence[int], q: float) -> float:
    """Estimate the `q` quantile (0..1) in ms from per-bucket counts; 0.0 for no calls.

    `hist[i]` counts calls in bucket i of LATENCY_BUCKETS_MS; a shorter sequence (a row from
    before the histogram existed is empty) counts as zeros for the missing buckets. A
    quantile in the +inf bucket is reported as the last finite bound, the most that is known.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    if len(hist) > BUCKET_COUNT:
        raise ValueError(f"histogram has {len(hist)} buckets, at most {BUCKET_COUNT} exist")
    if any(count < 0 for count in hist):
        raise ValueError("histogram counts must not be negative")
    total = sum(hist)
    if total == 0:
        return 0.0
    rank = q * total
    below = 0
    index = 0
    for index, count in enumerate(hist):  # noqa: B007 - the bucket found is used below
        if count > 0 and below + count >= rank:
            break
        below += count
    # rank <= total, so the loop stops at the latest on the last non-empty bucket.
    lower = LATENCY_BUCKETS_MS[index - 1] if index > 0 else 0.0
    upper = LATENCY_BUCKETS_MS[index]
    if math.isinf(upper):
        return lower
    return lower + (upper - lower) * (rank - below) / hist[index]
