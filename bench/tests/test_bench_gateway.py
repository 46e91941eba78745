"""The edge bench's static upstream body: valid JSON of the size the comparison names."""

import json

from bench.gateway import BODY_BYTES, static_body


def test_the_static_body_is_json_of_about_7_6_kb() -> None:
    body = static_body()
    assert len(body) == BODY_BYTES
    assert json.loads(body)["value"]


def test_stage_costs_split_the_gateway_by_difference() -> None:
    from bench.gateway import stage_costs

    found = stage_costs(
        {
            "static_serve": 15.0,
            "static_serve_uvicorn": 40.0,
            "static_relay": 90.0,
            "static_relay_aiohttp": 240.0,
            "static_gateway": 200.0,
        }
    )
    assert found == {
        "serving (the gateway's edge)": 15.0,
        "serving on uvicorn instead (ASGI)": 40.0,
        "upstream client": 75.0,
        "upstream client, aiohttp instead": 225.0,
        "gateway's own work (token, app, limit, event, metrics)": 110.0,
    }


def test_nginx_at_its_own_half_adds_its_median_p99_over_the_direct_one() -> None:
    from bench.gateway import _own_half_figures
    from bench.wrk import LoadResult

    def runs(*p99s: float) -> list[LoadResult]:
        return [LoadResult(1000, 5.0, 0, 0, 0.1, 0.2, p99) for p99 in p99s]

    found = _own_half_figures(
        {"static_direct_nginx_half": runs(1.0, 9.0, 2.0), "static_nginx_own_half": runs(5.0, 6.0)},
        25_000.0,
    )
    assert found == {
        "nginx_own_calls_per_second": 25_000.0,
        "nginx_own_direct_p99_ms": 2.0,
        "nginx_own_p99_ms": 5.5,
        "nginx_own_added_p99_ms": 3.5,
    }


def test_checks_by_source_reads_the_limiter_counter_by_its_label() -> None:
    from bench.gateway import _checks_by_source

    samples = {
        'capps_gateway_ratelimit_checks_total{source="lease"}': 998.0,
        'capps_gateway_ratelimit_checks_total{source="redis"}': 2.0,
        "capps_gateway_compiled": 1.0,
    }
    assert _checks_by_source(samples) == {"lease": 998.0, "redis": 2.0}
