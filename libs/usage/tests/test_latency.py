"""Latency buckets and the quantile estimated from a day's histogram."""

import itertools
import math

import pytest

from capps_usage.latency import (
    BUCKET_COUNT,
    LATENCY_BUCKETS_MS,
    bucket_index,
    quantile_from_histogram,
)


def _hist(latencies: list[float]) -> list[int]:
    hist = [0] * BUCKET_COUNT
    for latency in latencies:
        hist[bucket_index(latency)] += 1
    return hist


def test_bounds_grow_and_end_with_infinity() -> None:
    assert all(a < b for a, b in itertools.pairwise(LATENCY_BUCKETS_MS))
    assert math.isinf(LATENCY_BUCKETS_MS[-1])


def test_bucket_bounds_are_inclusive_upper_bounds() -> None:
    assert bucket_index(0.0) == 0
    assert bucket_index(1.0) == 0
    assert bucket_index(1.0001) == 1
    assert bucket_index(100.0) == LATENCY_BUCKETS_MS.index(100.0)
    assert bucket_index(10**9) == BUCKET_COUNT - 1


def test_empty_histogram_has_quantile_zero() -> None:
    assert quantile_from_histogram([], 0.95) == 0.0
    assert quantile_from_histogram([0] * BUCKET_COUNT, 0.5) == 0.0


def test_quantile_interpolates_inside_its_bucket() -> None:
    # 100 calls in (10, 15]: the median sits halfway through that bucket.
    hist = _hist([12.0] * 100)
    assert quantile_from_histogram(hist, 0.5) == pytest.approx(12.5)
    assert quantile_from_histogram(hist, 1.0) == pytest.approx(15.0)


def test_p95_lands_in_the_bucket_of_the_true_p95() -> None:
    latencies = [float(ms) for ms in range(1, 1001)]  # true p95 = 950 ms
    p95 = quantile_from_histogram(_hist(latencies), 0.95)
    assert 750.0 < p95 <= 1000.0


def test_slow_tail_reports_the_last_finite_bound() -> None:
    hist = _hist([5.0] * 10 + [120_000.0] * 90)
    assert quantile_from_histogram(hist, 0.95) == LATENCY_BUCKETS_MS[-2]


def test_short_histogram_counts_missing_buckets_as_zero() -> None:
    assert quantile_from_histogram([0, 4], 0.5) == pytest.approx(1.5)


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_quantile_outside_zero_one_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        quantile_from_histogram([1], q)


def test_negative_or_oversized_histograms_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        quantile_from_histogram([1, -1], 0.5)
    with pytest.raises(ValueError, match="buckets"):
        quantile_from_histogram([1] * (BUCKET_COUNT + 1), 0.5)
