"""The command line accepts LOG_LEVEL as every service spells it."""

import pytest

from capps_aggregator.__main__ import faust_log_level


@pytest.mark.parametrize(
    ("level", "expected"),
    [("WARNING", "WARN"), ("warning", "WARN"), ("CRITICAL", "CRIT"), ("INFO", "INFO")],
)
def test_python_level_names_become_faust_ones(level: str, expected: str) -> None:
    assert faust_log_level(level) == expected
