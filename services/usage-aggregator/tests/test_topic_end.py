"""A stored watermark past the topic's end: the topic was recreated under the usage database."""

from capps_aggregator.consumer import partitions_past_end, past_end_problem


def test_a_live_topic_is_never_past_its_end() -> None:
    assert partitions_past_end({0: 10, 1: 0, 2: 7}, {0: 10, 1: 3, 2: 900}) == {}


def test_watermarks_past_the_end_are_named_with_both_offsets() -> None:
    found = partitions_past_end({0: 5000, 1: 3, 2: 12}, {0: 40, 1: 3, 2: 11})
    assert found == {0: (5000, 40), 2: (12, 11)}
    problem = past_end_problem("capps.requests.v1", found)
    assert problem is not None
    assert "partition 0 watermark 5000 > end 40" in problem
    assert "partition 2 watermark 12 > end 11" in problem
    assert "recreated" in problem


def test_a_partition_without_a_known_end_is_left_alone() -> None:
    assert partitions_past_end({0: 5}, {}) == {}
    assert past_end_problem("t", {}) is None
