"""Coarse deadlines, checked by one periodic sweep instead of a loop timer each.

uvloop gives every `call_later` a libuv timer of its own: arming and cancelling one costs
~2.1 µs (measured), and a proxied call armed and cancelled three (its head's, its connection's
keep-alive, its upstream exchange's). The limits they serve last seconds, so one sweep every
`interval_s` over the armed deadlines is enough; a deadline fires at most `interval_s` late.
"""

import asyncio
from collections.abc import Callable, Hashable

SWEEP_S = 0.1
"""The longest interval between sweeps; shorter when a limit is short (tests)."""


def sweep_interval(*limits_s: float) -> float:
    """The sweep interval for limits this long: a tenth of a second, or a quarter of the
    shortest limit."""
    return max(min(SWEEP_S, *(limit / 4 for limit in limits_s)), 0.001)


class Deadlines:
    """At most one deadline per key; `callback` runs once the deadline has passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self._armed: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._sweeping: asyncio.TimerHandle | None = None

    def arm(self, key: Hashable, delay_s: float, callback: Callable[[], None]) -> None:
        """Run `callback` once `delay_s` has passed, unless re-armed or disarmed before."""
        self.arm_at(key, self._loop.time() + delay_s, callback)

    def arm_at(self, key: Hashable, when: float, callback: Callable[[], None]) -> None:
        """`arm` for a deadline in the loop's clock."""
        self._armed[key] = (when, callback)
        if self._sweeping is None:
            self._sweeping = self._loop.call_later(self._interval_s, self._sweep)

    def disarm(self, key: Hashable) -> None:
        """Drop the key's deadline, if any."""
        self._armed.pop(key, None)

    def close(self) -> None:
        """Drop every deadline and stop sweeping."""
        self._armed.clear()
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None

    def _sweep(self) -> None:
        self._sweeping = None
        now = self._loop.time()
        due = [key for key, (when, _) in self._armed.items() if when <= now]
        for key in due:
            # A callback may have re-armed or dropped another key meanwhile.
            entry = self._armed.get(key)
            if entry is not None and entry[0] <= now:
                del self._armed[key]
                entry[1]()
        if self._armed and self._sweeping is None:
            self._sweeping = self._loop.call_later(self._interval_s, self._sweep)
