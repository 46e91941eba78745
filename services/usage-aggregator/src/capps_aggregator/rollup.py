"""Pure batch arithmetic: consumed records -> per-app counters and per-partition watermarks.

A watermark is the next offset a sink has not applied yet for one partition; a record below it
was already counted, so the same batch rolled twice against the advanced watermark adds nothing.

This is the hot path, so it stays lean: records are decoded straight from the consumer's own
records into per-partition columns (no object per record besides the decoded event), and
buckets are integers computed from the event's epoch seconds (minute = s // 60, day =
s // 86400) instead of datetime arithmetic per event.
"""

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from capps_events import DecodeError, RequestEvent, TimeWindow, decode_request, validate_request
from capps_usage.latency import BUCKET_COUNT, bucket_index
from capps_usage.series import COUNTERS

Headers = Sequence[tuple[str, bytes]]

# Slots of a counter row, in the column order of usage_minute / usage_day.
REQUESTS, S2XX, S3XX, S4XX, S5XX, DENIED, THROTTLED, BYTES_IN, BYTES_OUT, LAT_SUM, LAT_MAX = range(
    11
)
# The read model's counters (libs/usage), then the latency sum and maximum it derives from.
COUNTER_COLUMNS = (*COUNTERS, "latency_ms_sum", "latency_ms_max")
# Status class (status // 100) -> its slot; 1xx counts in `requests` only.
_CLASS_SLOT = (None, None, S2XX, S3XX, S4XX, S5XX)
SECONDS_PER_DAY = 86_400

Row = list[float]  # ints except the two latency slots; one list per (app, bucket)


class RawRecord(Protocol):
    """What the writer needs of a consumed record (aiokafka's ConsumerRecord has it)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A record built by hand (tests, benchmarks); consumed records are used as they come."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that goes to the DLQ: `reason` is a short label, `detail` the message."""

    partition: int
    record: RawRecord
    reason: str
    detail: str


@dataclass(slots=True)
class PartitionBatch:
    """One partition's records of a batch, decoded, in offset order.

    `events[i]` is None for a dead-lettered record: it counts for nothing but still moves the
    watermark past itself, so it is dead-lettered once and never blocks its partition.
    """

    partition: int
    records: Sequence[RawRecord]
    offsets: list[int]
    events: list[RequestEvent | None]
    seconds: list[float]

    def start_at(self, watermark: int) -> int:
        """The index of the first record at or above `watermark`."""
        return bisect.bisect_left(self.offsets, watermark)

    def slice(self, start: int, stop: int) -> "PartitionBatch":
        """Records [start, stop) as a batch of their own."""
        return PartitionBatch(
            self.partition,
            self.records[start:stop],
            self.offsets[start:stop],
            self.events[start:stop],
            self.seconds[start:stop],
        )

    def __len__(self) -> int:
        return len(self.offsets)


def decode_partition(
    partition: int, records: Sequence[RawRecord], window: TimeWindow
) -> tuple[PartitionBatch, list[Rejected]]:
    """Decode and validate one partition's records; the refused ones come back as rejects."""
    offsets: list[int] = []
    events: list[RequestEvent | None] = []
    seconds: list[float] = []
    rejected: list[Rejected] = []
    for record in records:
        offsets.append(record.offset)
        try:
            event = decode_request(record.value, list(record.headers))
            seconds.append(validate_request(event, window))
            events.append(event)
        except DecodeError as exc:
            events.append(None)
            seconds.append(0.0)
            rejected.append(Rejected(partition, record, exc.reason, str(exc)))
    return PartitionBatch(partition, records, offsets, events, seconds), rejected


def decode_batch(
    fetched: Mapping[int, Sequence[RawRecord]], window: TimeWindow
) -> tuple[list[PartitionBatch], list[Rejected]]:
    """Decode every partition of a fetch (partition -> records in offset order)."""
    batches: list[PartitionBatch] = []
    rejected: list[Rejected] = []
    for partition, records in fetched.items():
        if not records:
            continue
        batch, rejects = decode_partition(partition, records, window)
        batches.append(batch)
        rejected.extend(rejects)
    return batches, rejected


@dataclass(slots=True)
class UsageRollup:
    """What a batch adds to the counters, after dropping what a sink already applied.

    Buckets are integers: minutes and days since the Unix epoch (UTC). Counter rows follow
    COUNTER_COLUMNS. `tenants` carries each app's tenant (an app has exactly one).
    """

    minutes: dict[tuple[str, int], Row] = field(default_factory=dict)
    days: dict[tuple[str, int], Row] = field(default_factory=dict)
    day_latency: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    routes: dict[tuple[str, int, str, str], list[int]] = field(default_factory=dict)
    tenants: dict[str, str] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    counted: int = 0
    skipped: int = 0

    @property
    def empty(self) -> bool:
        """True when the batch holds nothing new for this sink."""
        return not self.next_offsets


def rollup(  # noqa: PLR0912, PLR0915 - the per-event loop is inlined: it is the hot path
    batches: Iterable[PartitionBatch], watermarks: Mapping[int, int]
) -> UsageRollup:
    """Count the records at or above their partition's watermark (a missing one is 0)."""
    result = UsageRollup()
    minutes = result.minutes
    day_latency = result.day_latency
    routes = result.routes
    tenants = result.tenants
    last_seen = result.last_seen
    for batch in batches:
        start = batch.start_at(watermarks.get(batch.partition, 0))
        result.skipped += start
        if start >= len(batch):
            continue
        result.next_offsets[batch.partition] = batch.offsets[-1] + 1
        events = batch.events
        seconds = batch.seconds
        for index in range(start, len(events)):
            event = events[index]
            if event is None:
                continue
            moment = seconds[index]
            app = event.app_id
            status = event.status
            latency = event.latency_ms
            minute_key = (app, int(moment // 60))
            row = minutes.get(minute_key)
            if row is None:
                row = minutes[minute_key] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0]
            row[REQUESTS] += 1
            slot = _CLASS_SLOT[status // 100]
            if slot is not None:
                row[slot] += 1
            if status == 401 or status == 403:  # noqa: PLR1714 - faster than a set here
                row[DENIED] += 1
            elif status == 429:
                row[THROTTLED] += 1
            row[BYTES_IN] += event.bytes_in
            row[BYTES_OUT] += event.bytes_out
            row[LAT_SUM] += latency
            if latency > row[LAT_MAX]:  # noqa: PLR1730 - cheaper than max() per event
                row[LAT_MAX] = latency
            day = int(moment // SECONDS_PER_DAY)
            hist = day_latency.get((app, day))
            if hist is None:
                hist = day_latency[app, day] = [0] * BUCKET_COUNT
            hist[bucket_index(latency)] += 1
            route_key = (app, day, event.method, event.route)
            route = routes.get(route_key)
            if route is None:
                route = routes[route_key] = [0, 0]
            route[0] += 1
            if status >= 400:
                route[1] += 1
            tenants[app] = event.tenant_id
            if moment > last_seen.get(app, 0.0):
                last_seen[app] = moment
            result.counted += 1
    result.days = days_of(minutes)
    return result


def days_of(minutes: Mapping[tuple[str, int], Row]) -> dict[tuple[str, int], Row]:
    """Day rows as the sums of their minute rows (few rows, not per event)."""
    days: dict[tuple[str, int], Row] = {}
    for (app, minute), row in minutes.items():
        _add_row(days, (app, minute // 1440), row)
    return days


@dataclass(frozen=True, slots=True)
class RolledPartition:
    """One partition's batch and its counters rolled from its first record.

    Rolled once per batch, outside any transaction; a sink whose watermark lies inside the
    batch (only after a crash or a rebalance) re-rolls just that partition from it.
    """

    batch: PartitionBatch
    counters: UsageRollup

    def above(self, watermark: int) -> UsageRollup:
        """The counters of the records at or above `watermark`."""
        if watermark <= self.batch.offsets[0]:
            return self.counters
        return rollup([self.batch], {self.batch.partition: watermark})


def roll_partitions(batches: Iterable[PartitionBatch]) -> list[RolledPartition]:
    """Roll each partition on its own (the Redis script applies one partition at a time)."""
    return [RolledPartition(batch, rollup([batch], {})) for batch in batches]


def merge(parts: Iterable[UsageRollup]) -> UsageRollup:
    """The sum of several partitions' counters (cost per counter row, not per event)."""
    total = UsageRollup()
    for part in parts:
        _add_rows(total.minutes, part.minutes)
        _add_rows(total.days, part.days)
        for key, hist in part.day_latency.items():
            mine = total.day_latency.get(key)
            if mine is None:
                total.day_latency[key] = hist.copy()
            else:
                for index, count in enumerate(hist):
                    mine[index] += count
        for route_key, counts in part.routes.items():
            route = total.routes.get(route_key)
            if route is None:
                total.routes[route_key] = counts.copy()
            else:
                route[0] += counts[0]
                route[1] += counts[1]
        total.tenants.update(part.tenants)
        for app, moment in part.last_seen.items():
            if moment > total.last_seen.get(app, 0.0):
                total.last_seen[app] = moment
        total.next_offsets.update(part.next_offsets)
        total.counted += part.counted
        total.skipped += part.skipped
    return total


def _add_rows(total: dict[tuple[str, int], Row], part: Mapping[tuple[str, int], Row]) -> None:
    for key, row in part.items():
        _add_row(total, key, row)


def _add_row(total: dict[tuple[str, int], Row], key: tuple[str, int], row: Row) -> None:
    mine = total.get(key)
    if mine is None:
        total[key] = row.copy()
        return
    for slot in range(LAT_SUM + 1):
        mine[slot] += row[slot]
    mine[LAT_MAX] = max(mine[LAT_MAX], row[LAT_MAX])
