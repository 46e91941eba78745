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
