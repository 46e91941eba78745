"""The paced point's control: a relay that spends as much CPU per call as the gateway.

`python -m bench.cpu_control PORT UPSTREAM_URL WORK_US` serves bench/edge_apps.py's
`relay` handler (the gateway's HTTP edge on uvloop, the gateway's upstream client) plus a
fixed amount of pure-Python work per call, about WORK_US µs of CPU: with WORK_US = the
gateway's CPU per call minus the relay's, it costs what the gateway costs and does nothing
else (no token, rate limit, event, background task).

Why: on this shared 2-core machine a fixed piece of Python work takes its usual CPU time most
of the time and several times that now and then (a 1.1 ms loop: p99 2.6-6.8 ms, max 10-21 ms
of the thread's own CPU time, with no steal reported), so any single-threaded server keeps
up less well while that lasts, and the more CPU a call costs the longer its backlog takes to
clear. Paced beside the gateway, the control shows which part of the gateway's p99 its cost
per call alone explains; what the gateway adds on top of the control is its own.
The work is a fixed number of loop iterations, not "spin until the clock says WORK_US":
a slower CPU must make it slower, as it makes the gateway's calls slower.
"""

import statistics
import sys
import time

from bench.edge_apps import Relay, serve_on_edge
from capps_gateway.call import Call

CALIBRATION_ITERATIONS = 20_000
CALIBRATION_SAMPLES = 51


def spin(iterations: int) -> int:
    """A fixed amount of interpreter work (the result keeps it from being optimised away)."""
    total = 0
    for i in range(iterations):
        total += i * i
    return total


def iterations_for(work_us: float, seconds_per_iteration: float) -> int:
    """How many iterations of `spin` take about `work_us` µs of CPU (none for no work)."""
    if work_us <= 0 or seconds_per_iteration <= 0:
        return 0
    return round(work_us / 1e6 / seconds_per_iteration)


def seconds_per_iteration() -> float:
    """The median CPU time of one `spin` iteration on this machine now (median: the slow
    moments this control is about must not set its size)."""
    samples = []
    for _ in range(CALIBRATION_SAMPLES):
        started = time.thread_time()
        spin(CALIBRATION_ITERATIONS)
        samples.append((time.thread_time() - started) / CALIBRATION_ITERATIONS)
    return statistics.median(samples)


class WorkingRelay(Relay):
    """bench/edge_apps.py's relay, plus a fixed amount of Python work per call."""

    def __init__(self, upstream: str, iterations: int) -> None:
        super().__init__(upstream)
        self._iterations = iterations

    async def __call__(self, call: Call) -> None:
        """One call: the work, then the relay."""
        spin(self._iterations)
        await super().__call__(call)


def main() -> None:
    """Serve the control until SIGTERM."""
    import uvloop

    port, upstream, work_us = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    handler = WorkingRelay(upstream, iterations_for(work_us, seconds_per_iteration()))
    uvloop.run(serve_on_edge(handler, port))


if __name__ == "__main__":
    main()
