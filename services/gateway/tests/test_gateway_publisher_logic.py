"""Unit tests of the publisher's decisions: spool or send, stalls, outcomes, partitions, buffer."""

import asyncio
from pathlib import Path

from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
)
from aiokafka.partitioner import DefaultPartitioner

from capps_events import KafkaRecord, RequestEvent, decode_request
from capps_events.testing import request_event
from capps_gateway.events import (
    Outcome,
    SpoolingPublisher,
    delivery_outcome,
    group_by_partition,
    should_spool,
    stalled,
)
from capps_gateway.spool import Spool


def test_spools_until_the_producer_has_started() -> None:
    assert should_spool(
        producer_started=False, healthy=True, in_flight=0, incoming=1, in_flight_max=10
    )


def test_spools_while_kafka_is_unhealthy() -> None:
    assert should_spool(
        producer_started=True, healthy=False, in_flight=0, incoming=1, in_flight_max=10
    )


def test_spools_past_the_in_flight_cap_and_sends_below_it() -> None:
    assert should_spool(
        producer_started=True, healthy=True, in_flight=8, incoming=3, in_flight_max=10
    )
    assert not should_spool(
        producer_started=True, healthy=True, in_flight=7, incoming=3, in_flight_max=10
    )


def test_a_stall_is_an_old_unacknowledged_batch() -> None:
    assert not stalled(None, 100.0, 2.0)
    assert not stalled(99.0, 100.0, 2.0)
    assert stalled(97.0, 100.0, 2.0)


def test_outcomes_only_call_unsent_what_never_left_the_producer() -> None:
    assert delivery_outcome(None, 1) is Outcome.ACKED
    assert delivery_outcome(KafkaConnectionError(), 0) is Outcome.UNSENT
    # Expired waiting for a leader, right after its first drain: never sent.
    assert delivery_outcome(NotLeaderForPartitionError(), 1) is Outcome.UNSENT
    assert delivery_outcome(LeaderNotAvailableError(), 1) is Outcome.UNSENT
    # Sent once, re-enqueued, then expired: the first attempt may have landed.
    assert delivery_outcome(NotLeaderForPartitionError(), 2) is Outcome.AMBIGUOUS
    assert delivery_outcome(OutOfOrderSequenceNumber(), 1) is Outcome.AMBIGUOUS
    assert delivery_outcome(KafkaConnectionError(), 3) is Outcome.AMBIGUOUS


def test_partitions_match_the_producers_keyed_partitioner() -> None:
    records = [KafkaRecord(key=f"app-{n % 7}".encode(), value=b"{}", headers=[]) for n in range(50)]
    cache: dict[bytes, int] = {}
    groups = group_by_partition(records, cache, [0, 1, 2])
    assert sum(len(group) for group in groups.values()) == 50
    for partition, group in groups.items():
        for record in group:
            assert DefaultPartitioner()(record.key, [0, 1, 2], [0, 1, 2]) == partition
    assert len(cache) == 7


def event(n: int) -> RequestEvent:
    return request_event(bytes_out=n, request_id=f"r-{n}")


async def test_publish_only_buffers_and_stop_spools_without_kafka(tmp_path: Path) -> None:
    # Nothing listens on port 1: the producer never starts, so everything must spool.
    publisher = SpoolingPublisher("127.0.0.1:1", "t", "unit", spool_dir=tmp_path, linger_s=0)
    starting = asyncio.create_task(publisher.start_until_ready())
    events = [event(n) for n in range(25)]
    for item in events:
        publisher.publish(item)
    await asyncio.sleep(0.05)
    starting.cancel()
    await asyncio.gather(starting, return_exceptions=True)
    await publisher.stop()
    spool = Spool(tmp_path)
    found = [r for s in spool.sealed_segments() for r in spool.read(s)[0]]
    assert [decode_request(r.value, r.headers).id for r in found] == [e.id for e in events]


async def test_an_overfull_buffer_goes_to_disk(tmp_path: Path) -> None:
    publisher = SpoolingPublisher("127.0.0.1:1", "t", "unit", spool_dir=tmp_path, buffer_max=10)
    for n in range(10):
        publisher.publish(event(n))
    # The overflow went to disk synchronously, before any drain ran.
    assert publisher.spooled_bytes > 0
    await publisher.stop()
    spool = Spool(tmp_path)
    assert sum(len(spool.read(s)[0]) for s in spool.sealed_segments()) == 10
