"""A counted batch's span links to its events' traces; the stores' writes are its children."""

import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from capps_aggregator.rollup import (
    Rejected,
    RolledPartition,
    SourceRecord,
    UsageRollup,
    decode_partition,
    merge,
)
from capps_aggregator.tracing import MAX_LINKS, TracedBatchWriter, batch_links
from capps_events import TimeWindow, TraceContext, encode_request
from capps_events.testing import request_event


def window() -> TimeWindow:
    """The accepted event times around now (taken at each use: a long run outlives any constant)."""
    return TimeWindow.around(time.time(), 3600.0, 300.0)


class FakeSink:
    """Counts everything above its per-partition watermarks."""

    def __init__(self) -> None:
        self.marks: dict[int, int] = {}

    async def watermarks(self, partitions: Sequence[int]) -> dict[int, int]:
        return {partition: self.marks.get(partition, 0) for partition in partitions}

    async def apply(self, parts: Sequence[RolledPartition]) -> UsageRollup:
        counters = merge(part.above(self.marks.get(part.batch.partition, 0)) for part in parts)
        self.marks.update(counters.next_offsets)
        return counters


class FakeDeadLetters:
    async def publish(self, rejects: Sequence[Rejected]) -> None:
        raise AssertionError(f"nothing should be dead-lettered: {rejects}")


class FakeRepair:
    async def rebuild(self, *, stale: bool = False) -> None:
        raise AssertionError("no repair expected")


def record(offset: int, context: TraceContext | None, *extra: tuple[str, bytes]) -> SourceRecord:
    encoded = encode_request(request_event(app_id=f"app-{offset % 3}"), "s", context)
    return SourceRecord(offset, encoded.key, encoded.value, [*encoded.headers, *extra])


def context(n: int) -> TraceContext:
    return TraceContext(trace_id=0xABC000 + n, span_id=0x100 + n, flags=1)


def test_links_go_to_each_distinct_sampled_context_and_skip_malformed_ones() -> None:
    records = [
        record(0, context(1)),
        record(1, None),
        record(2, context(2)),
        record(3, context(1)),  # the same producer span again: one link
        record(4, None, ("ce_traceparent", b"00-zzzz-not-a-traceparent")),
        record(5, TraceContext(trace_id=0xABC009, span_id=0x109, flags=0)),  # not sampled
    ]
    batch, rejects = decode_partition(0, records, window())
    assert rejects == []  # a malformed traceparent never refuses the event
    assert all(event is not None for event in batch.events)
    links = batch_links([batch])
    assert [link.context.trace_id for link in links] == [0xABC001, 0xABC002]
    assert all(link.context.is_remote for link in links)


def test_links_are_bounded() -> None:
    records = [record(n, context(n)) for n in range(MAX_LINKS * 3)]
    batch, _ = decode_partition(0, records, window())
    assert len(batch_links([batch])) == MAX_LINKS


async def test_the_batch_span_parents_the_store_writes_and_links_the_events() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    writer = TracedBatchWriter(
        provider.get_tracer("t"),
        "capps.requests.v1",
        postgres=FakeSink(),
        hot=FakeSink(),
        dlq=FakeDeadLetters(),
        repair=FakeRepair(),
    )
    batch, rejects = decode_partition(0, [record(0, context(7)), record(1, None)], window())
    outcome = await writer.apply([batch], rejects)
    assert outcome.counted_postgres == 2
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"capps.requests.v1 process", "postgresql write", "redis write"}
    parent = spans["capps.requests.v1 process"]
    assert parent.kind is SpanKind.CONSUMER
    assert [link.context.trace_id for link in parent.links] == [0xABC007]
    assert parent.attributes is not None
    assert parent.attributes["messaging.batch.message_count"] == 2
    for name in ("postgresql write", "redis write"):
        child = spans[name]
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
        assert child.context.trace_id == parent.context.trace_id
