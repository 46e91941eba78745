"""The loop-lag histogram shows a gateway whose loop could not run (a CPU taken away)."""

import asyncio
import os
import signal

import aiohttp

from .conftest import Gateway, StartGateway, metric_sample

COUNT = "capps_gateway_loop_lag_seconds_count"
UNDER_A_QUARTER = 'capps_gateway_loop_lag_seconds_bucket{le="0.25"}'
FROZEN_S = 0.6
DEADLINE_S = 15.0


async def _late_wakeups(http: aiohttp.ClientSession, gateway: Gateway) -> float:
    """Wake-ups that came more than 0.25 s late, so far."""
    total = await metric_sample(http, gateway, COUNT)
    return total - await metric_sample(http, gateway, UNDER_A_QUARTER)


async def test_a_frozen_gateway_shows_a_late_wakeup_in_the_loop_lag_histogram(
    start_gateway: StartGateway, demo_api_url: str, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(demo_api_url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    # It observes on its own, every 0.1 s, with nothing to serve.
    while await metric_sample(http, gateway, COUNT) < 3:
        assert loop.time() < deadline, "no loop-lag observations within the deadline"
        await asyncio.sleep(0.1)
    before = await _late_wakeups(http, gateway)

    # What a VM taking the CPU away does to the process: nothing of it runs for a while.
    os.kill(gateway.pid, signal.SIGSTOP)
    await asyncio.sleep(FROZEN_S)
    os.kill(gateway.pid, signal.SIGCONT)

    while await _late_wakeups(http, gateway) <= before:
        assert loop.time() < deadline, "the freeze never showed in the loop-lag histogram"
        await asyncio.sleep(0.1)
