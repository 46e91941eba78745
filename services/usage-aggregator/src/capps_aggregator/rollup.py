"""Pure batch arithmetic: consumed records -> per-app counters and per-partition watermarks.

A watermark is the next offset a sink has not applied yet for one partition; a record below it
was already counted, so the same batch rolled twice against the advanced watermark adds nothing.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from capps_events import DecodeError, RequestEvent, decode_request
from capps_usage.keys import minute_floor, utc_day

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record as consumed: where it sits in its partition and what it holds."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class PositionedEvent:
    """A decoded record at its position; `event` is None for a record sent to the DLQ.

    An undecodable record counts for nothing but still moves the watermark past itself, so
    it is dead-lettered once and never blocks its partition.
    """

    partition: int
    offset: int
    event: RequestEvent | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that could not be decoded, and why."""

    record: SourceRecord
    reason: str


@dataclass(slots=True)
class UsageRollup:
    """What one batch adds to the counters, after dropping what a sink already applied.

    Counters are keyed by app (the tables' primary keys); `tenants` carries each app's tenant,
    since an app belongs to exactly one tenant.
    """

    minutes: dict[tuple[str, datetime], int] = field(default_factory=dict)
    days: dict[tuple[str, date], int] = field(default_factory=dict)
    tenants: dict[str, str] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    counted: int = 0
    skipped: int = 0

    @property
    def empty(self) -> bool:
        """True when the batch holds nothing new for this sink."""
        return not self.next_offsets


def decode_batch(records: Iterable[SourceRecord]) -> tuple[list[PositionedEvent], list[Rejected]]:
    """Decode every record; undecodable ones come back as rejects and as event-less positions."""
    positioned: list[PositionedEvent] = []
    rejected: list[Rejected] = []
    for record in records:
        try:
            event: RequestEvent | None = decode_request(record.value, record.headers)
        except DecodeError as exc:
            event = None
            rejected.append(Rejected(record, str(exc)))
        positioned.append(PositionedEvent(record.partition, record.offset, event))
    return positioned, rejected


def rollup(events: Iterable[PositionedEvent], watermarks: Mapping[int, int]) -> UsageRollup:
    """Count the events at or above their partition's watermark (a missing watermark is 0)."""
    minutes: defaultdict[tuple[str, datetime], int] = defaultdict(int)
    days: defaultdict[tuple[str, date], int] = defaultdict(int)
    result = UsageRollup()
    for item in events:
        if item.offset < watermarks.get(item.partition, 0):
            result.skipped += 1
            continue
        if item.offset >= result.next_offsets.get(item.partition, 0):
            result.next_offsets[item.partition] = item.offset + 1
        event = item.event
        if event is None:
            continue
        result.counted += 1
        minutes[event.app_id, minute_floor(event.time)] += 1
        days[event.app_id, utc_day(event.time)] += 1
        result.tenants[event.app_id] = event.tenant_id
        seen = result.last_seen.get(event.app_id)
        if seen is None or event.time > seen:
            result.last_seen[event.app_id] = event.time
    result.minutes = dict(minutes)
    result.days = dict(days)
    return result


def partition_ranges(events: Sequence[PositionedEvent]) -> dict[int, tuple[int, int]]:
    """Each partition's (first offset, next offset) in the batch."""
    ranges: dict[int, tuple[int, int]] = {}
    for item in events:
        first, after = ranges.get(item.partition, (item.offset, item.offset + 1))
        ranges[item.partition] = (min(first, item.offset), max(after, item.offset + 1))
    return ranges


def by_partition(events: Iterable[PositionedEvent]) -> dict[int, list[PositionedEvent]]:
    """Split a batch per partition, keeping each partition's order."""
    parts: defaultdict[int, list[PositionedEvent]] = defaultdict(list)
    for item in events:
        parts[item.partition].append(item)
    return dict(parts)
