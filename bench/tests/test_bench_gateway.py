"""The edge bench's static upstream body: valid JSON of the size the comparison names."""

import json

from bench.gateway import BODY_BYTES, static_body


def test_the_static_body_is_json_of_about_7_6_kb() -> None:
    body = static_body()
    assert len(body) == BODY_BYTES
    assert json.loads(body)["value"]
