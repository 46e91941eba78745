"""Coarse deadlines: each fires once, after its time, unless re-armed or disarmed."""

import asyncio

from capps_gateway.deadlines import Deadlines, sweep_interval

DEADLINE_S = 10.0


def test_the_sweep_is_a_tenth_of_a_second_or_a_quarter_of_the_shortest_limit() -> None:
    assert sweep_interval(10.0, 30.0) == 0.1
    assert sweep_interval(30.0, 0.2) == 0.05


async def test_a_deadline_fires_once_after_its_time() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.01)
    fired: list[float] = []
    done = asyncio.Event()

    def fire() -> None:
        fired.append(loop.time())
        done.set()

    armed_at = loop.time()
    deadlines.arm("a", 0.05, fire)
    await asyncio.wait_for(done.wait(), DEADLINE_S)
    assert fired[0] - armed_at >= 0.05
    await asyncio.sleep(0.05)  # more sweeps: it does not fire again
    assert len(fired) == 1
    deadlines.close()


async def test_re_arming_replaces_and_disarming_drops_a_deadline() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.01)
    fired: list[str] = []
    done = asyncio.Event()

    def second() -> None:
        fired.append("second")
        done.set()

    deadlines.arm("kept", 0.02, lambda: fired.append("first"))
    deadlines.arm("kept", 0.04, second)
    deadlines.arm("dropped", 0.02, lambda: fired.append("dropped"))
    deadlines.disarm("dropped")
    await asyncio.wait_for(done.wait(), DEADLINE_S)
    await asyncio.sleep(0.05)
    assert fired == ["second"]
    deadlines.close()


async def test_a_callback_may_arm_and_disarm_others() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 0.01)
    fired: list[str] = []
    done = asyncio.Event()

    def later() -> None:
        fired.append("later")
        done.set()

    def first() -> None:
        fired.append("first")
        deadlines.disarm("due-too")
        deadlines.arm("later", 0.02, later)

    deadlines.arm("first", 0.01, first)
    deadlines.arm("due-too", 0.01, lambda: fired.append("due-too"))  # armed after "first"
    await asyncio.wait_for(done.wait(), DEADLINE_S)
    # "due-too" was due as soon as "first": dropped by it, it never runs.
    assert fired == ["first", "later"]
    deadlines.close()
