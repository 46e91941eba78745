"""Unit tests of turning one aiokafka fetch into writer input and commit offsets."""

from aiokafka import ConsumerRecord, TopicPartition

from capps_aggregator.consumer import by_partition_number, commit_offsets, records_behind


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t",
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"v",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
        headers=(("ce_type", b"x"),),
    )


def test_a_fetch_becomes_partitions_and_next_offsets() -> None:
    fetched = {
        TopicPartition("t", 0): [record(0, 5), record(0, 6)],
        TopicPartition("t", 3): [record(3, 40)],
        TopicPartition("t", 4): [],
    }
    parts = by_partition_number(fetched)
    assert {p: [r.offset for r in records] for p, records in parts.items()} == {
        0: [5, 6],
        3: [40],
    }
    assert commit_offsets(fetched) == {TopicPartition("t", 0): 7, TopicPartition("t", 3): 41}


def test_records_behind_is_highwater_minus_next_offset() -> None:
    assert records_behind(120, 100) == 20
    assert records_behind(100, 100) == 0
    # A highwater from an older fetch can trail what was just applied.
    assert records_behind(90, 100) == 0
    assert records_behind(None, 100) is None
