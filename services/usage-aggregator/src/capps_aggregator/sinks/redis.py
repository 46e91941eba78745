"""Applies batches to the hot Redis counters, one atomic Lua script per partition.

Redis may lag PostgreSQL (a crash between the two writes), so it keeps its own watermark per
partition in `capps:usage:offsets` and filters by that one: the script refuses a batch that
starts below the watermark and returns it, and the caller re-rolls only what lies at or above.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as redis

from capps_aggregator.rollup import PositionedEvent, UsageRollup, by_partition, rollup
from capps_usage.keys import (
    DAY_RETENTION_DAYS,
    MINUTE_TTL_S,
    OFFSETS_KEY,
    day_field,
    day_key,
    hour_key,
    minute_field,
    offset_field,
    seen_key,
    utc_day,
)

log = logging.getLogger(__name__)

# KEYS: offsets hash, then one key per minute op, per day op, per seen op (in that order).
# ARGV: watermark field, first offset, next offset, day cutoff, #minute ops, #day ops, #seen
# ops, then (field, count, expire-at) per minute op, (field, count) per day op, ms per seen op.
# Returns {1, next offset} when applied, {0, watermark} when refused.
APPLY_BATCH_LUA = """
local offsets = KEYS[1]
local field = ARGV[1]
local first = tonumber(ARGV[2])
local after = tonumber(ARGV[3])
local cutoff = ARGV[4]
local minute_ops = tonumber(ARGV[5])
local day_ops = tonumber(ARGV[6])
local seen_ops = tonumber(ARGV[7])
local mark = tonumber(redis.call('HGET', offsets, field))
if mark and first < mark then
  return {0, mark}
end
local k = 2
local a = 8
for _ = 1, minute_ops do
  redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1])
  redis.call('EXPIREAT', KEYS[k], ARGV[a + 2])
  k = k + 1
  a = a + 3
end
for _ = 1, day_ops do
  local key = KEYS[k]
  redis.call('HINCRBY', key, ARGV[a], ARGV[a + 1])
  local stale = {}
  for _, day in ipairs(redis.call('HKEYS', key)) do
    if day < cutoff then
      stale[#stale + 1] = day
    end
  end
  if #stale > 0 then
    redis.call('HDEL', key, unpack(stale))
  end
  k = k + 1
  a = a + 2
end
for _ = 1, seen_ops do
  local current = tonumber(redis.call('GET', KEYS[k]))
  if not current or tonumber(ARGV[a]) > current then
    redis.call('SET', KEYS[k], ARGV[a])
  end
  k = k + 1
  a = a + 1
end
redis.call('HSET', offsets, field, after)
return {1, after}
"""


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """The keys and arguments of one script invocation."""

    keys: list[str]
    args: list[str | int]


def script_call(
    topic: str, partition: int, first: int, counters: UsageRollup, now: datetime
) -> ScriptCall:
    """Lay one partition's counters out for the script (pure, so it is unit-tested)."""
    cutoff = utc_day(now) - timedelta(days=DAY_RETENTION_DAYS - 1)
    keys: list[str] = [OFFSETS_KEY]
    minute_args: list[str | int] = []
    for (app_id, minute), count in sorted(counters.minutes.items()):
        hour = minute.astimezone(UTC).replace(minute=0)
        keys.append(hour_key(app_id, minute))
        minute_args += [minute_field(minute), count, int(hour.timestamp()) + MINUTE_TTL_S]
    day_args: list[str | int] = []
    for (app_id, day), count in sorted(counters.days.items()):
        keys.append(day_key(app_id))
        day_args += [day_field(day), count]
    seen_args: list[str | int] = []
    for app_id, seen in sorted(counters.last_seen.items()):
        keys.append(seen_key(app_id))
        seen_args.append(int(seen.timestamp() * 1000))
    head: list[str | int] = [
        offset_field(topic, partition),
        first,
        counters.next_offsets[partition],
        day_field(cutoff),
        len(counters.minutes),
        len(counters.days),
        len(counters.last_seen),
    ]
    return ScriptCall(keys, head + minute_args + day_args + seen_args)


class RedisUsageSink:
    """The hot counters the registry reads through `capps_usage.stats.read_stats`."""

    def __init__(self, client: "redis.Redis", topic: str) -> None:
        self._client = client
        self._topic = topic
        self._script = client.register_script(APPLY_BATCH_LUA)

    async def watermarks(self, partitions: Sequence[int]) -> dict[int, int]:
        """Redis's own next offset to apply of each partition (0 when none was applied)."""
        fields = [offset_field(self._topic, partition) for partition in partitions]
        values = await self._client.hmget(OFFSETS_KEY, fields)
        return {
            partition: int(value) if value is not None else 0
            for partition, value in zip(partitions, values, strict=True)
        }

    async def apply(
        self, events: Sequence[PositionedEvent], now: datetime | None = None
    ) -> UsageRollup:
        """Apply every partition of the batch; return what was newly counted in Redis.

        The first attempt of all partitions goes in one pipeline. A refused partition is
        re-rolled from the watermark Redis returned and sent again on its own; this happens
        only after a crash or a rebalance, so it need not be fast.
        """
        moment = now or datetime.now(UTC)
        total = UsageRollup()
        parts = by_partition(events)
        attempts: dict[int, tuple[int, UsageRollup]] = {}
        for partition, items in parts.items():
            first = min(item.offset for item in items)
            attempts[partition] = (first, rollup(items, {}))
        replies = await self._run(attempts, moment)
        while replies:
            retry: dict[int, tuple[int, UsageRollup]] = {}
            for partition, (applied, mark) in replies.items():
                _first, counters = attempts[partition]
                if applied:
                    _merge(total, counters)
                    continue
                again = rollup(parts[partition], {partition: mark})
                total.skipped += again.skipped
                if again.empty:
                    continue
                log.info(
                    "redis behind the batch; re-rolling from its watermark",
                    extra={"partition": partition, "watermark": mark},
                )
                retry[partition] = (mark, again)
                again.skipped = 0
            attempts = retry
            replies = await self._run(attempts, moment) if retry else {}
        return total

    async def _run(
        self, attempts: dict[int, tuple[int, UsageRollup]], now: datetime
    ) -> dict[int, tuple[bool, int]]:
        pipe = self._client.pipeline(transaction=False)
        order = sorted(attempts)
        for partition in order:
            first, counters = attempts[partition]
            call = script_call(self._topic, partition, first, counters, now)
            await self._script(keys=call.keys, args=call.args, client=pipe)
        results = await pipe.execute()
        return {
            partition: (int(reply[0]) == 1, int(reply[1]))
            for partition, reply in zip(order, results, strict=True)
        }


def _merge(total: UsageRollup, part: UsageRollup) -> None:
    # Partitions are disjoint, so only counts add up; keys of one partition never collide
    # with another's watermark entry.
    total.counted += part.counted
    total.skipped += part.skipped
    total.next_offsets.update(part.next_offsets)
