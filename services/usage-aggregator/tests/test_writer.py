"""The batch writer's logic between its ports, with in-memory fakes of the stores."""

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from capps_aggregator.pipeline import STORE_REFUSED, UsageBatchWriter
from capps_aggregator.rollup import (
    REQUESTS,
    PartitionBatch,
    Rejected,
    RolledPartition,
    SourceRecord,
    UsageRollup,
    merge,
)
from capps_aggregator.sinks.redis import HotStoreNotReadyError
from capps_events import RequestEvent
from capps_events.testing import request_event

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(app: str) -> RequestEvent:
    return request_event(id="e", time=T0, app_id=app)


def batch(partition: int, apps: list[str], first: int = 0) -> PartitionBatch:
    offsets = list(range(first, first + len(apps)))
    return PartitionBatch(
        partition,
        [
            SourceRecord(offset, app.encode(), b"v")
            for offset, app in zip(offsets, apps, strict=True)
        ],
        offsets,
        [event(app) for app in apps],
        [T0.timestamp()] * len(apps),
    )


class FakeSink:
    """Counts per app with per-partition watermarks; refuses rows of `refuse_app` like a
    database refusing a value; `not_ready` times it raises HotStoreNotReadyError first."""

    def __init__(self, refuse_app: str | None = None, not_ready: int = 0) -> None:
        self.marks: dict[int, int] = {}
        self.counts: dict[str, int] = {}
        self.refuse_app = refuse_app
        self.not_ready = not_ready

    async def watermarks(self, partitions: Sequence[int]) -> dict[int, int]:
        return {partition: self.marks.get(partition, 0) for partition in partitions}

    async def apply(self, parts: Sequence[RolledPartition]) -> UsageRollup:
        if self.not_ready:
            self.not_ready -= 1
            raise HotStoreNotReadyError("marker missing")
        counters = merge(part.above(self.marks.get(part.batch.partition, 0)) for part in parts)
        if any(app == self.refuse_app for app, _ in counters.minutes):
            raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")
        for (app, _), row in counters.minutes.items():
            self.counts[app] = self.counts.get(app, 0) + int(row[REQUESTS])
        self.marks.update(counters.next_offsets)
        return counters


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[Rejected] = []

    async def publish(self, rejects: Sequence[Rejected]) -> None:
        self.sent.extend(rejects)


class FakeRepair:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    async def rebuild(self, *, stale: bool = False) -> None:
        self.calls.append(stale)


async def test_a_row_the_store_refuses_is_isolated_and_dead_lettered() -> None:
    postgres, hot = FakeSink(refuse_app="evil"), FakeSink()
    dlq, repair = FakeDeadLetters(), FakeRepair()
    writer = UsageBatchWriter(postgres, hot, dlq, repair)
    apps = ["a", "b", "a", "evil", "b", "a", "a"]
    outcome = await writer.apply([batch(0, apps), batch(1, ["c", "c"])], [])

    assert postgres.counts == {"a": 4, "b": 2, "c": 2}
    assert postgres.marks == {0: 7, 1: 2}
    assert [(r.record.offset, r.reason) for r in dlq.sent] == [(3, STORE_REFUSED)]
    assert outcome.dead_lettered == 1
    assert outcome.counted_postgres == 8
    # Redis was written concurrently and may have counted the refused record: rebuilt.
    assert repair.calls == [True]


async def test_a_replayed_batch_is_not_counted_twice() -> None:
    postgres, hot = FakeSink(), FakeSink()
    writer = UsageBatchWriter(postgres, hot, FakeDeadLetters(), FakeRepair())
    await writer.apply([batch(0, ["a"] * 5)], [])
    outcome = await writer.apply([batch(0, ["a"] * 8)], [])  # offsets 0..7 again
    assert postgres.counts == hot.counts == {"a": 8}
    assert (outcome.counted_postgres, outcome.skipped_postgres) == (3, 5)


async def test_a_hot_store_that_lost_data_is_rebuilt_then_written() -> None:
    postgres, hot = FakeSink(), FakeSink(not_ready=1)
    repair = FakeRepair()
    writer = UsageBatchWriter(postgres, hot, FakeDeadLetters(), repair)
    await writer.apply([batch(0, ["a", "b"])], [])
    assert repair.calls == [False]
    assert hot.counts == {"a": 1, "b": 1}


async def test_rejects_below_the_watermark_are_not_dead_lettered_again() -> None:
    postgres, dlq = FakeSink(), FakeDeadLetters()
    writer = UsageBatchWriter(postgres, FakeSink(), dlq, FakeRepair())
    postgres.marks[0] = 10
    rejects = [
        Rejected(0, SourceRecord(offset, b"k", b"v"), "undecodable", "x") for offset in (9, 10)
    ]
    outcome = await writer.apply([], rejects)
    assert [r.record.offset for r in dlq.sent] == [10]
    assert outcome.dead_lettered == 1


async def test_a_bug_is_not_retried_forever() -> None:
    class Broken(FakeSink):
        async def apply(self, parts: Sequence[RolledPartition]) -> UsageRollup:
            raise asyncpg.exceptions.UndefinedTableError("usage_minute")

    writer = UsageBatchWriter(Broken(), FakeSink(), FakeDeadLetters(), FakeRepair())
    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
        await writer.apply([batch(0, ["a"])], [])
