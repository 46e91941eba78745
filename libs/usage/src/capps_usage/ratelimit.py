"""The Redis key layout of per-app rate-limit windows, written by gateways, read by the registry.

Per app and fixed UTC window (by Redis's own clock, the one clock every gateway shares):
- `capps:ratelimit:{app}:minute:{start}`: calls admitted in the minute starting at epoch second
  `start` (a multiple of 60); expires 60 s after the window ends.
- `capps:ratelimit:{app}:hour:{start}`: the same per hour (`start` a multiple of 3600).
Admitted calls count, and tokens a gateway process leased ahead of its calls (a 429 takes
nothing). Headroom = the app's limit minus the value.
"""

KEY_PREFIX = "capps:ratelimit:"
WINDOWS: dict[str, int] = {"minute": 60, "hour": 3600}
"""Window name -> length in seconds."""
GRACE_S = 60
"""How long a window's key outlives the window."""


def window_start(now_s: int, length_s: int) -> int:
    """The epoch second at which the window holding `now_s` began."""
    return now_s - now_s % length_s


def ratelimit_key(app_id: str, window: str, start_s: int) -> str:
    """The key counting `app_id`'s admitted calls in the `window` starting at `start_s`."""
    return f"{KEY_PREFIX}{app_id}:{window}:{start_s}"
