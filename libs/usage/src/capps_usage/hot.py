"""Stats from the Redis hot store, one script call per chunk of apps, gated by the ready marker.

The script reads the marker and every counter of the chunk atomically, so an answer is either
complete (marker present) or refused as a whole (None: read PostgreSQL instead). Key names are
made by keys.py and passed in as templates, so the layout keeps one home.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as redis

from capps_usage.keys import (
    HOT_READY_KEY,
    HOUR_TOTAL_FIELD,
    day_field,
    day_key,
    hour_key,
    seen_key,
    trailing_hours,
    trend_days,
)
from capps_usage.model import AppStats, DayCount

__all__ = ["HOT_READY_KEY", "read_hot_last_seen", "read_hot_stats"]
APP_PLACEHOLDER = "{app}"
# Apps per script call: bounds how long one call keeps Redis busy for other clients.
CHUNK = 200

STATS_SCRIPT = """
local function key(template, app)
  local at = string.find(template, '{app}', 1, true)
  return string.sub(template, 1, at - 1) .. app .. string.sub(template, at + 5)
end
local ready, with_trend = ARGV[1], ARGV[2] == '1'
local lower, upper = tonumber(ARGV[3]), tonumber(ARGV[4])
local seen_t, day_t = ARGV[5], ARGV[6]
local hour_total = ARGV[8]
local pos = 9
local hours = {}
for i = 1, tonumber(ARGV[7]) do
  hours[i] = {ARGV[pos], tonumber(ARGV[pos + 1])}
  pos = pos + 2
end
local ndays = tonumber(ARGV[pos])
pos = pos + 1
local days = {}
for i = 1, ndays do
  days[i] = ARGV[pos]
  pos = pos + 1
end
if ready ~= '' and redis.call('EXISTS', ready) == 0 then
  return false
end
local out = {}
for a = pos, #ARGV do
  local app = ARGV[a]
  out[#out + 1] = redis.call('GET', key(seen_t, app)) or ''
  local total = 0
  for h, hour in ipairs(hours) do
    if h == 1 or h == #hours then
      -- The edge hours straddle the window: judge each minute (not the hour's total).
      local flat = redis.call('HGETALL', key(hour[1], app))
      for j = 1, #flat, 2 do
        if flat[j] ~= hour_total then
          local minute = hour[2] + 60 * tonumber(flat[j])
          if minute > lower and minute <= upper then
            total = total + tonumber(flat[j + 1])
          end
        end
      end
    else
      -- An hour inside the window counts whole: its total, one field instead of sixty.
      local whole = redis.call('HGET', key(hour[1], app), hour_total)
      if whole then
        total = total + tonumber(whole)
      else
        -- An hour written before hours kept a total: add up its minutes.
        local values = redis.call('HVALS', key(hour[1], app))
        for j = 1, #values do
          total = total + tonumber(values[j])
        end
      end
    end
  end
  out[#out + 1] = total
  if with_trend then
    -- One string of 30 counts per app: a client parses one reply element instead of 30.
    local counts = redis.call('HMGET', key(day_t, app), unpack(days))
    for j = 1, ndays do
      counts[j] = counts[j] or ''
    end
    out[#out + 1] = table.concat(counts, ',')
  end
end
return out
"""


def script_args(now: datetime, *, with_trend: bool, require_ready: bool = True) -> list[str]:
    """The script's arguments before the app ids: marker, window, key templates, days."""
    moment = now.astimezone(UTC)
    hours = trailing_hours(moment)
    days = trend_days(moment) if with_trend else []
    # A minute counts when it overlaps (now - 24 h, now]: start > now - 24 h - 1 min.
    lower = moment - timedelta(hours=24, minutes=1)
    args = [
        HOT_READY_KEY if require_ready else "",
        "1" if with_trend else "0",
        repr(lower.timestamp()),
        repr(moment.timestamp()),
        seen_key(APP_PLACEHOLDER),
        day_key(APP_PLACEHOLDER),
        str(len(hours)),
        HOUR_TOTAL_FIELD,
    ]
    for hour in hours:
        args += [hour_key(APP_PLACEHOLDER, hour), str(int(hour.timestamp()))]
    args.append(str(len(days)))
    args += [day_field(day) for day in days]
    return args


def parse_reply(
    reply: Sequence[Any], app_ids: Sequence[str], now: datetime, *, with_trend: bool
) -> dict[str, AppStats]:
    """Turn the script's flat reply into stats by app."""
    days = trend_days(now) if with_trend else []
    stride = 3 if with_trend else 2
    stats: dict[str, AppStats] = {}
    for index, app_id in enumerate(app_ids):
        seen, total, *trend = reply[index * stride : (index + 1) * stride]
        counts = trend[0].split(b",") if trend else []
        stats[app_id] = AppStats(
            last_seen=datetime.fromtimestamp(int(seen) / 1000, UTC) if seen else None,
            requests_24h=int(total),
            trend_30d=[
                DayCount(day, int(count) if count else 0)
                for day, count in zip(days, counts, strict=True)
            ],
        )
    return stats


async def read_hot_last_seen(
    client: "redis.Redis", app_ids: Sequence[str]
) -> dict[str, datetime | None] | None:
    """Last seen of many apps: the marker and one MGET in one round trip; None if not ready."""
    pipe = client.pipeline(transaction=False)
    pipe.exists(HOT_READY_KEY)
    pipe.mget([seen_key(app_id) for app_id in app_ids])
    ready, seen = await pipe.execute()
    if not ready:
        return None
    return {
        app_id: datetime.fromtimestamp(int(value) / 1000, UTC) if value else None
        for app_id, value in zip(app_ids, seen, strict=True)
    }


async def read_hot_stats(
    client: "redis.Redis",
    app_ids: Sequence[str],
    now: datetime,
    *,
    with_trend: bool = True,
    require_ready: bool = True,
) -> dict[str, AppStats] | None:
    """Stats of `app_ids` from Redis in one round trip, or None while the marker is missing.

    `require_ready=False` reads whatever Redis holds, for a caller with nothing better.
    """
    args = script_args(now, with_trend=with_trend, require_ready=require_ready)
    script = client.register_script(STATS_SCRIPT)
    pipe = client.pipeline(transaction=False)
    chunks = [app_ids[start : start + CHUNK] for start in range(0, len(app_ids), CHUNK)]
    for chunk in chunks:
        await script(keys=[], args=[*args, *chunk], client=pipe)
    replies = await pipe.execute()
    if any(reply is None for reply in replies):
        return None
    stats: dict[str, AppStats] = {}
    for chunk, reply in zip(chunks, replies, strict=True):
        stats.update(parse_reply(reply, chunk, now, with_trend=with_trend))
    return stats
