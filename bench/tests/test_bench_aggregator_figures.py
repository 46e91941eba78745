"""The aggregator group's pure parts: freshness attribution, targets, the series seed's shape."""

import uuid

from bench.aggregator_freshness import Poll, freshness_ms
from bench.aggregator_series import SERIES_APPS, app_id, seeded_rows
from bench.results import render_targets, target


def test_a_call_counts_as_fresh_at_the_first_later_poll_showing_as_many_calls() -> None:
    answers = [10.0, 10.1, 10.2]
    polls = [Poll(10.05, 5), Poll(10.15, 6), Poll(10.4, 6), Poll(10.5, 8)]
    # Baseline 5: call 1 is shown at 10.15 (count 6); calls 2 and 3 only at 10.5 (count 8).
    found = freshness_ms(answers, polls, baseline=5)
    assert [round(ms) for ms in found] == [150, 400, 300]


def test_calls_never_shown_counted_are_left_out() -> None:
    assert freshness_ms([1.0, 2.0], [Poll(1.5, 1), Poll(2.5, 1)]) == [500.0]


def test_targets_say_whether_a_bound_was_met() -> None:
    rows = [
        target("rss", 250.0, "MB", 300, "max"),
        target("ratio", 0.7, "x", 0.8, "min"),
        target("bytes", 9.3, "B", None),
    ]
    assert [row["met"] for row in rows] == [True, False, None]
    lines = render_targets(rows)
    assert lines[1].endswith("<= 300  yes")
    assert lines[2].endswith(">= 0.8  NO")
    assert lines[3].rstrip().endswith("B")


def test_series_app_ids_are_distinct_uuids() -> None:
    assert app_id(7) == str(uuid.UUID(app_id(7)))  # canonical form, as PostgreSQL prints it
    assert len({app_id(index) for index in range(SERIES_APPS)}) == SERIES_APPS


def test_the_seed_holds_about_22_million_minute_rows() -> None:
    assert seeded_rows() == 100 * 20_160 + 9_900 * 2_016
