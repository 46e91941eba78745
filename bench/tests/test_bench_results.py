"""Rounds become medians and ratios, the document keeps table order, history reads both schemas."""

from datetime import UTC, datetime

import pytest

from bench.results import (
    SCHEMA,
    history,
    http_entry,
    observations,
    percentile,
    rate_entry,
    ratio,
    ratios,
    render_table,
    run_id,
    shape_run,
    spread,
)
from bench.wrk import LoadResult


def load(requests: int, non_2xx: int = 0, p50: float = 1.0) -> LoadResult:
    return LoadResult(
        requests=requests,
        seconds=10.0,
        non_2xx=non_2xx,
        socket_errors=0,
        p50_ms=p50,
        p90_ms=2.0,
        p99_ms=3.0,
    )


def test_spread_is_median_and_range() -> None:
    summary = spread([3.0, 1.0, 10.0])
    assert (summary.median, summary.low, summary.high) == (3.0, 1.0, 10.0)
    with pytest.raises(ValueError, match="no values"):
        spread([])


def test_ratio_is_none_without_a_denominator() -> None:
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 4.0) is None
    assert ratio(1.0, None) is None


def test_percentile_stays_within_the_samples() -> None:
    assert percentile([5.0], 95) == 5.0
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 95) <= 100.0


def test_http_entry_counts_only_2xx_and_takes_medians() -> None:
    entry = http_entry(
        "through_gateway", [load(10_000, p50=2.0), load(12_000, non_2xx=2_000), load(30_000)]
    )
    assert entry["rounds"] == [1_000.0, 1_000.0, 3_000.0]
    assert entry["median"] == 1_000.0
    assert (entry["min"], entry["max"]) == (1_000.0, 3_000.0)
    assert entry["non_2xx"] == 2_000
    assert entry["requests"] == 52_000
    assert entry["p50_ms"] == 1.0
    assert entry["role"] == "target"
    assert entry["runs"][1]["per_second"] == 1_200.0


def test_ratios_cover_only_scenarios_that_ran() -> None:
    scenarios = {
        "upstream_direct": rate_entry("upstream_direct", [8_000.0]),
        "nginx_proxy": rate_entry("nginx_proxy", [4_000.0]),
        "through_gateway": rate_entry("through_gateway", [2_000.0]),
    }
    assert ratios(scenarios) == {
        "gateway_to_direct": 0.25,
        "nginx_to_direct": 0.5,
        "gateway_to_nginx": 0.5,
    }


def document() -> dict[str, object]:
    return shape_run(
        run="run-20261127T040000Z",
        at=datetime(2026, 11, 27, 4, 0, tzinfo=UTC),
        settings={"rounds": 3},
        machine={"nproc": 2, "load_before": [3.0, 1.0, 1.0], "load_after": [1.0, 1.0, 1.0]},
        scenarios={
            "aggregator_worker": rate_entry("aggregator_worker", [20_000.0]),
            "aggregator_ceiling": rate_entry("aggregator_ceiling", [80_000.0]),
            "through_gateway": http_entry("through_gateway", [load(15_000, non_2xx=5)]),
            "upstream_direct": http_entry("upstream_direct", [load(78_000)]),
            "nginx_proxy": http_entry("nginx_proxy", [load(77_000), load(76_000), load(50_000)]),
        },
        extra={"duration_seconds": 60.0},
    )


def test_shape_run_orders_scenarios_as_the_table_and_adds_ratios() -> None:
    shaped = document()
    assert shaped["schema"] == SCHEMA
    assert shaped["at"] == "2026-11-27T04:00:00+00:00"
    assert list(shaped["scenarios"]) == [  # type: ignore[call-overload]
        "upstream_direct",
        "nginx_proxy",
        "through_gateway",
        "aggregator_ceiling",
        "aggregator_worker",
    ]
    assert shaped["ratios"]["worker_to_ceiling"] == 0.25  # type: ignore[index]
    assert shaped["duration_seconds"] == 60.0


def test_table_shows_every_row_ratio_and_note() -> None:
    table = render_table(document())
    assert "upstream direct [baseline]" in table
    assert "aggregator worker (events/s)" in table
    assert "through gateway / nginx proxy" in table
    assert "aggregator writer alone" not in table
    assert "through gateway: 5 non-2xx answers" in table
    assert "load average 3.00 on 2 CPUs" in table


def test_observations_flag_saturated_upstream_and_noisy_rounds() -> None:
    notes = observations(document())
    assert any(note.startswith("nginx reaches") for note in notes)
    assert any(note.startswith("nginx proxy (reference): rounds varied") for note in notes)


def test_run_id_is_utc_timestamped() -> None:
    assert run_id(datetime(2026, 11, 27, 3, 55, 12, tzinfo=UTC)) == "run-20261127T035512Z"


def test_history_reads_both_schemas_oldest_first() -> None:
    legacy = {
        "at": "2026-11-27T03:55:12+00:00",
        "upstream_direct": {"per_second": 7_745.0},
        "through_gateway": {"per_second": 1_472.0},
    }
    points = history([("run-b", document()), ("e2e-a", legacy), ("junk", {"x": 1})])
    assert [point.run for point in points] == ["e2e-a", "run-20261127T040000Z"]
    assert points[0].rates == {"upstream_direct": 7_745.0, "through_gateway": 1_472.0}
    assert points[1].rates["nginx_proxy"] == 7_600.0
