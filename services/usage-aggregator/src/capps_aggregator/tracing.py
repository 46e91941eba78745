"""The spans of a counted batch, built only when tracing is on (an OTLP endpoint is configured).

One CONSUMER span per batch, with a CLIENT child span for each store's write (PostgreSQL,
Redis). A batch holds events of many calls, each from its own trace, so the batch span is no
child of any: it links to the trace context each event carries (`ce_traceparent`), at most
`MAX_LINKS` distinct sampled ones. An event without a context, with one its producer did not
sample, or with a malformed one, is counted as any other and simply not linked. With tracing
off the runtime builds the plain writer and sinks.
"""

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from capps_aggregator.pipeline import (
    BatchOutcome,
    DeadLetterSink,
    HotStoreRepair,
    UsageBatchWriter,
    UsageSink,
)
from capps_aggregator.rollup import PartitionBatch, Rejected, RolledPartition, UsageRollup
from capps_events import trace_context
from capps_kit.tracing import span_context_of

MAX_LINKS = 64
"""Links per batch span: enough to find the calls of a quiet system, bounded for a busy one."""


def batch_links(batches: Sequence[PartitionBatch], limit: int = MAX_LINKS) -> list[Link]:
    """Links to the distinct trace contexts the batch's counted events carry, at most `limit`."""
    links: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for batch in batches:
        for record, event in zip(batch.records, batch.events, strict=True):
            if event is None:
                continue
            context = trace_context(record.headers)
            if (
                context is None
                or not context.sampled
                or (context.trace_id, context.span_id) in seen
            ):
                continue
            seen.add((context.trace_id, context.span_id))
            links.append(Link(span_context_of(context)))
            if len(links) >= limit:
                return links
    return links


class TracedSink:
    """A store's writes, each inside a CLIENT span under the batch's span."""

    def __init__(self, sink: UsageSink, tracer: trace.Tracer, system: str) -> None:
        self._sink = sink
        self._tracer = tracer
        self._system = system

    async def watermarks(self, partitions: Sequence[int]) -> dict[int, int]:
        """As the store answers (reads are not traced)."""
        return await self._sink.watermarks(partitions)

    async def apply(self, parts: Sequence[RolledPartition]) -> UsageRollup:
        """The store's write inside its span."""
        with self._tracer.start_as_current_span(
            f"{self._system} write", kind=SpanKind.CLIENT, attributes={"db.system": self._system}
        ) as span:
            rollup = await self._sink.apply(parts)
            span.set_attribute("capps.events.counted", rollup.counted)
            span.set_attribute("capps.events.skipped", rollup.skipped)
            return rollup


class TracedBatchWriter(UsageBatchWriter):
    """The batch writer with a span per batch linking to the events' traces."""

    def __init__(
        self,
        tracer: trace.Tracer,
        topic: str,
        *,
        postgres: UsageSink,
        hot: UsageSink,
        dlq: DeadLetterSink,
        repair: HotStoreRepair,
    ) -> None:
        super().__init__(
            TracedSink(postgres, tracer, "postgresql"),
            TracedSink(hot, tracer, "redis"),
            dlq,
            repair,
        )
        self._tracer = tracer
        self._topic = topic

    async def apply(
        self, batches: Sequence[PartitionBatch], rejects: Sequence[Rejected]
    ) -> BatchOutcome:
        """Apply the batch as the plain writer does, inside its span."""
        with self._tracer.start_as_current_span(
            f"{self._topic} process",
            kind=SpanKind.CONSUMER,
            links=batch_links(batches),
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": self._topic,
                "messaging.batch.message_count": sum(len(batch) for batch in batches),
            },
        ) as span:
            outcome = await super().apply(batches, rejects)
            span.set_attribute("capps.events.dead_lettered", outcome.dead_lettered)
            return outcome
