"""JSON-lines logs: one object per record, extras as keys, exceptions kept."""

import logging
import sys

import orjson

from capps_kit.logging import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "capps.test", "levelno": logging.WARNING, "levelname": "WARNING"}
    )
    record.msg = "batch failed; retrying"
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_object_with_service_level_and_extras() -> None:
    line = JsonFormatter("usage-aggregator").format(_record(retry_in_s=0.4, partition=3))
    assert "\n" not in line
    payload = orjson.loads(line)
    assert payload["service"] == "usage-aggregator"
    assert payload["level"] == "warning"
    assert payload["logger"] == "capps.test"
    assert payload["msg"] == "batch failed; retrying"
    assert (payload["retry_in_s"], payload["partition"]) == (0.4, 3)
    assert payload["ts"].endswith("+00:00")


class _Spot:
    def __str__(self) -> str:
        return "here"


def _fail() -> None:
    raise ValueError("broken")


def test_values_json_cannot_hold_are_rendered_as_text_and_exceptions_kept() -> None:
    record = _record(where=_Spot())
    try:
        _fail()
    except ValueError:
        record.exc_info = sys.exc_info()
    payload = orjson.loads(JsonFormatter("gateway").format(record))
    assert payload["where"] == "here"
    assert "ValueError: broken" in payload["exc"]
