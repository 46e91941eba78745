"""Applies batches to the hot Redis counters, one atomic Lua script per partition.

Redis may lag PostgreSQL (a crash between the two writes), so it keeps its own watermark per
partition in `capps:usage:offsets` and filters by that one: the script refuses a batch that
starts below the watermark and returns it, and the caller re-rolls only what lies at or above.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as redis

from capps_aggregator.rollup import REQUESTS, SECONDS_PER_DAY, RolledPartition, UsageRollup
from capps_usage.keys import (
    DAY_RETENTION_DAYS,
    HOT_READY_KEY,
    MINUTE_TTL_S,
    OFFSETS_KEY,
    day_field_at,
    day_key,
    hour_key_at,
    offset_field,
    seen_key,
)

log = logging.getLogger(__name__)

NOT_READY = -1


class HotStoreNotReadyError(RuntimeError):
    """Redis lost its data (the completeness marker is missing): rebuild before writing."""


# KEYS: offsets hash, ready marker, then one key per minute op, per day op, per seen op.
# ARGV: watermark field, first offset, next offset, day cutoff, #minute ops, #day ops, #seen
# ops, then (field, count, expire-at) per minute op, (field, count) per day op, ms per seen op.
# Returns {1, next offset} when applied, {0, watermark} when refused for an older start, and
# {-1, 0} when the marker is missing (Redis lost data; counting into it would be wrong).
APPLY_BATCH_LUA = """
local offsets = KEYS[1]
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1, 0}
end
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
local k = 3
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
    topic: str, partition: int, first: int, counters: UsageRollup, now_s: float
) -> ScriptCall:
    """Lay one partition's counters out for the script (pure, so it is unit-tested).

    Buckets the hot store no longer keeps (minutes of hours past their TTL, days past the
    35-day window: late events replayed from a gateway's spool) are left to PostgreSQL.
    """
    today = int(now_s // SECONDS_PER_DAY)
    cutoff = today - (DAY_RETENTION_DAYS - 1)
    keys: list[str] = [OFFSETS_KEY, HOT_READY_KEY]
    minute_args: list[str | int] = []
    for (app_id, minute), row in sorted(counters.minutes.items()):
        hour = minute // 60
        expire_at = hour * 3600 + MINUTE_TTL_S
        if expire_at <= now_s:
            continue
        keys.append(hour_key_at(app_id, hour))
        minute_args += [f"{minute % 60:02d}", int(row[REQUESTS]), expire_at]
    day_args: list[str | int] = []
    for (app_id, day), row in sorted(counters.days.items()):
        if day < cutoff:
            continue
        keys.append(day_key(app_id))
        day_args += [day_field_at(day), int(row[REQUESTS])]
    seen_args: list[str | int] = []
    for app_id, seen in sorted(counters.last_seen.items()):
        keys.append(seen_key(app_id))
        # Whole microseconds first, as PostgreSQL's to_timestamp keeps them, so a rebuild
        # from PostgreSQL gives the very same milliseconds.
        seen_args.append(round(seen * 1_000_000) // 1000)
    head: list[str | int] = [
        offset_field(topic, partition),
        first,
        counters.next_offsets[partition],
        day_field_at(cutoff),
        len(minute_args) // 3,
        len(day_args) // 2,
        len(seen_args),
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
        self, parts: Sequence[RolledPartition], now_s: float | None = None
    ) -> UsageRollup:
        """Apply every partition of the batch; return what was newly counted in Redis.

        The first attempt of all partitions goes in one pipeline. A refused partition is
        re-rolled from the watermark Redis returned and sent again on its own; this happens
        only after a crash or a rebalance, so it need not be fast. Raises
        HotStoreNotReadyError when the completeness marker is missing.
        """
        moment = datetime.now(UTC).timestamp() if now_s is None else now_s
        total = UsageRollup()
        by_partition = {part.batch.partition: part for part in parts}
        attempts = {part.batch.partition: (part.batch.offsets[0], part.counters) for part in parts}
        while attempts:
            replies = await self._run(attempts, moment)
            retry: dict[int, tuple[int, UsageRollup]] = {}
            for partition, (status, mark) in replies.items():
                _first, counters = attempts[partition]
                if status == NOT_READY:
                    raise HotStoreNotReadyError("the hot store's completeness marker is missing")
                if status == 1:
                    total.counted += counters.counted
                    total.skipped += counters.skipped
                    total.next_offsets.update(counters.next_offsets)
                    continue
                again = by_partition[partition].above(mark)
                total.skipped += again.skipped
                if again.empty:
                    continue
                log.info(
                    "redis behind the batch; re-rolling from its watermark",
                    extra={"partition": partition, "watermark": mark},
                )
                retry[partition] = (mark, again)
                # Counted as skipped above; the retry's own success must not count them again.
                again.skipped = 0
            attempts = retry
        return total

    async def _run(
        self, attempts: dict[int, tuple[int, UsageRollup]], now_s: float
    ) -> dict[int, tuple[int, int]]:
        order = sorted(attempts)
        async with self._client.pipeline(transaction=False) as pipe:
            for partition in order:
                first, counters = attempts[partition]
                call = script_call(self._topic, partition, first, counters, now_s)
                await self._script(keys=call.keys, args=call.args, client=pipe)
            results = await pipe.execute()
        return {
            partition: (int(reply[0]), int(reply[1]))
            for partition, reply in zip(order, results, strict=True)
        }
