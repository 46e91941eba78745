"""How late the event loop runs a timer: the wait a call arriving now would have before its
first step, whatever held the loop (a burst of calls, a slow step, a CPU taken away).

On shared or unsteady CPUs this is where a gateway's tail latency comes from (README, "Why the
paced p99 is tens of milliseconds"); the histogram shows it per process without a benchmark.
"""

import asyncio
from collections.abc import Callable

INTERVAL_S = 0.1


async def watch(observe: Callable[[float], None], interval_s: float = INTERVAL_S) -> None:
    """Sleep `interval_s` again and again; observe how much later than asked each wake-up came."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        observe(max(0.0, loop.time() - due))
