"""Freshness: from a call's answer at the gateway to its count in the registry, at a steady rate.

How it is measured, on the running stack (gateway -> Kafka -> the stack's aggregator worker ->
Redis -> registry):
1. Capacity: a few seconds of closed-loop calls through the gateway with CONCURRENCY
   connections from this process give what one gateway process (and this client) can answer.
2. Rate: half the worker's peak events/s measured earlier in the same run, unless that is
   more than CAPACITY_SHARE of the capacity found in 1 (one gateway process is then the
   limit, not the worker); the report says which bound applied.
3. Load: calls are scheduled open-loop at that rate for SECONDS (call i is due at
   start + i / rate, whatever the answers before it did), every call's answer time is recorded
   (the moment the client has the response); meanwhile one poller asks the registry's admin
   API (`GET /v1/apps/{id}`, `requests_24h`) for the load app's count back to back and
   records each count with the moment its answer arrived.
4. Attribution: the app is new, so its count starts at 0; sorting the answers by time, the
   k-th answered call is taken as counted at the first poll answer that arrived after it and
   shows a count of at least k, i.e. the registry then reflected every call answered up to
   it. Freshness of call k = that poll's arrival - the call's answer. This is the staleness a
   reader of the registry sees; it includes up to one poll round trip (reported beside it),
   so it errs on the slow side.
5. Where the time goes: a consumer of the stack's requests topic (no group, from its end)
   keeps the load app's records' timestamps (CreateTime: when the gateway handed the event to
   its Kafka producer); the k-th of them against the k-th answer splits freshness into the
   gateway's part (answer -> handed to the producer) and the rest (Kafka, the aggregator,
   Redis, the registry's read). Both clocks are this machine's.
"""

import asyncio
import bisect
import contextlib
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.progress import say, ticking
from bench.results import percentile
from bench.stack import StackUrls, create_load_app
from tests.infra import kafka_security

SECONDS = 20
CONCURRENCY = 32
CAPACITY_SECONDS = 4
CAPACITY_SHARE = 0.8
DRAIN_TIMEOUT_S = 60.0
PROBE_PATH = "/api/alerts"
REQUESTS_TOPIC = os.environ.get("AGGREGATOR_TOPIC", "capps.requests.v1")


@dataclass(frozen=True, slots=True)
class Poll:
    """One answer of the registry: when it arrived and the count it showed."""

    at: float
    count: int


def freshness_ms(answers: list[float], polls: list[Poll], baseline: int = 0) -> list[float]:
    """Per answered call (answer times), ms until a poll arrived showing it counted.

    Calls never shown counted are left out (the caller reports how many).
    """
    ordered = sorted(answers)
    times = [poll.at for poll in polls]
    found = []
    for rank, answered in enumerate(ordered, start=1):
        index = bisect.bisect_right(times, answered)
        while index < len(polls) and polls[index].count - baseline < rank:
            index += 1
        if index == len(polls):
            break  # counts only grow: no later call can be shown counted either
        found.append((polls[index].at - answered) * 1000)
    return found


async def _capacity(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    """Calls/s this client gets through the gateway, closed loop."""
    answered = 0
    stop = time.monotonic() + CAPACITY_SECONDS

    async def loop() -> None:
        nonlocal answered
        while time.monotonic() < stop:
            async with session.get(url, headers=headers) as response:
                await response.read()
                answered += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
    return answered / (time.monotonic() - started)


async def _count(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with session.get(url, headers=headers) as response:
        response.raise_for_status()
        return int((await response.json())["requests_24h"])


async def _steady_load(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], rate: float
) -> tuple[list[float], int, float]:
    """Open-loop calls at `rate` for SECONDS: (answer times, non-2xx, worst lag behind plan)."""
    total = int(rate * SECONDS)
    answers: list[float] = []
    non_2xx = 0
    worst_lag = 0.0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    start = time.monotonic() + 0.2

    async def caller() -> None:
        nonlocal non_2xx, worst_lag
        while not queue.empty():
            due = start + queue.get_nowait() / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            worst_lag = max(worst_lag, -wait)
            async with session.get(url, headers=headers) as response:
                await response.read()
                answers.append(time.monotonic())
                non_2xx += response.status >= 300

    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return answers, non_2xx, worst_lag


async def _measure(urls: StackUrls, worker_peak: float | None) -> dict[str, Any]:
    app_id, app_token, admin = await asyncio.to_thread(create_load_app, urls.registry)
    call_url = f"{urls.gateway}{PROBE_PATH}"
    call_headers = {"Authorization": f"Bearer {app_token}"}
    count_url = f"{urls.registry}/v1/apps/{app_id}"
    count_headers = {"Authorization": f"Bearer {admin}"}
    limit = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with (
        aiohttp.ClientSession(connector=limit) as calls,
        aiohttp.ClientSession() as registry,
    ):
        with ticking(f"freshness: gateway capacity, {CAPACITY_SECONDS}s closed loop"):
            capacity = await _capacity(calls, call_url, call_headers)
        # The capacity calls are counted too; wait for them so the baseline is settled.
        warm = 0
        while True:
            baseline = await _count(registry, count_url, count_headers)
            if baseline == warm:
                break
            warm = baseline
            await asyncio.sleep(1.0)
        half_worker = worker_peak / 2 if worker_peak else None
        gateway_bound = CAPACITY_SHARE * capacity
        rate = min(half_worker or gateway_bound, gateway_bound)
        bound = "half the worker's peak" if rate == half_worker else "the gateway"
        say(
            f"freshness: gateway capacity {capacity:,.0f} calls/s; half the worker's peak"
            f" {half_worker or 0:,.0f}/s; steady rate {rate:,.0f}/s (bound by {bound})"
        )
        polls: list[Poll] = []
        done = asyncio.Event()
        target: list[int] = []  # set once the load ends: every answered call counted

        async def poller() -> None:
            while not done.is_set() and not (target and polls and polls[-1].count >= target[0]):
                count = await _count(registry, count_url, count_headers)
                polls.append(Poll(time.monotonic(), count))

        tap = await _topic_tap(app_id)
        polling = asyncio.create_task(poller())
        with ticking(
            f"freshness: {rate:,.0f} calls/s for {SECONDS}s, polling the registry",
            status=lambda: f"{len(polls):,} polls",
        ):
            answers, non_2xx, worst_lag = await _steady_load(calls, call_url, call_headers, rate)
            # The poller stops once the registry shows every answered call (or at the limit).
            target.append(baseline + len(answers))
            try:
                await asyncio.wait_for(asyncio.shield(polling), DRAIN_TIMEOUT_S)
            except TimeoutError:
                done.set()
                await polling
        stamps = await _drain_tap(tap, len(answers))
    samples = freshness_ms(answers, polls, baseline)
    # Answers in wall-clock seconds, to compare with Kafka's timestamps.
    wall = time.time() - time.monotonic()
    handed = [
        (stamp - (answered + wall)) * 1000
        for stamp, answered in zip(sorted(stamps), sorted(answers), strict=False)
    ]
    rest = [total - part for total, part in zip(samples, handed, strict=False)]
    gaps = [(later.at - earlier.at) * 1000 for earlier, later in itertools.pairwise(polls)]
    return {
        "freshness_p50_ms": percentile(samples, 50),
        "freshness_p99_ms": percentile(samples, 99),
        "freshness_max_ms": max(samples),
        "freshness_calls": len(answers),
        "freshness_shown_counted": len(samples),
        "freshness_non_2xx": non_2xx,
        "freshness_rate_per_second": rate,
        "freshness_achieved_per_second": len(answers) / SECONDS,
        "freshness_rate_bound": bound,
        "freshness_gateway_capacity_per_second": capacity,
        "freshness_worst_lag_behind_schedule_ms": worst_lag * 1000,
        "freshness_poll_interval_p50_ms": percentile(gaps, 50),
        "freshness_polls": len(polls),
        "freshness_gateway_to_producer_p50_ms": percentile(handed, 50) if handed else None,
        "freshness_gateway_to_producer_p99_ms": percentile(handed, 99) if handed else None,
        "freshness_producer_to_registry_p50_ms": percentile(rest, 50) if rest else None,
        "freshness_producer_to_registry_p99_ms": percentile(rest, 99) if rest else None,
    }


@dataclass(slots=True)
class _Tap:
    """A consumer keeping one app's record timestamps until `expected` of them arrived."""

    consumer: AIOKafkaConsumer
    stamps: list[float]
    expected: list[int]
    keeping: "asyncio.Task[None] | None" = None


async def _topic_tap(app_id: str) -> _Tap:
    """Start keeping the timestamps (s) of the app's records from the topic's current end."""
    security = kafka_security().client_options()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        enable_auto_commit=False,
        **security,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"], **security)
    await admin.start()
    try:
        described = await admin.describe_topics([REQUESTS_TOPIC])
    finally:
        await admin.close()
    partitions = [
        TopicPartition(REQUESTS_TOPIC, int(found["partition"]))
        for topic in described
        for found in topic["partitions"]
    ]
    if not partitions:
        raise RuntimeError(f"topic {REQUESTS_TOPIC} has no partitions: is the stack up?")
    await consumer.start()
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:  # resolve the end offsets now, before the load starts
        await consumer.position(partition)
    key = app_id.encode()
    tap = _Tap(consumer, [], [])

    async def keep() -> None:
        while not (tap.expected and len(tap.stamps) >= tap.expected[0]):
            fetched = await consumer.getmany(timeout_ms=100)
            tap.stamps.extend(
                record.timestamp / 1000
                for batch in fetched.values()
                for record in batch
                if record.key == key
            )

    tap.keeping = asyncio.create_task(keep())
    return tap


async def _drain_tap(tap: _Tap, expected: int) -> list[float]:
    """The timestamps once `expected` arrived (or what arrived within the limit)."""
    tap.expected.append(expected)
    assert tap.keeping is not None
    # At the limit wait_for cancels it: fewer stamps, fewer split samples.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tap.keeping, DRAIN_TIMEOUT_S)
    await tap.consumer.stop()
    return tap.stamps


def measure_freshness(worker_peak: float | None) -> dict[str, Any]:
    """Run the measurement on the stack `make up` started; figures for the run's JSON."""
    found = asyncio.run(_measure(StackUrls.from_env(), worker_peak))
    say(
        f"freshness at {found['freshness_rate_per_second']:,.0f} calls/s: p50"
        f" {found['freshness_p50_ms']:.0f} ms, p99 {found['freshness_p99_ms']:.0f} ms over"
        f" {found['freshness_shown_counted']:,}/{found['freshness_calls']:,} calls; registry"
        f" polled every {found['freshness_poll_interval_p50_ms']:.0f} ms (p50); answer ->"
        f" handed to Kafka p50/p99 {found['freshness_gateway_to_producer_p50_ms'] or 0:.0f}/"
        f"{found['freshness_gateway_to_producer_p99_ms'] or 0:.0f} ms, the rest"
        f" {found['freshness_producer_to_registry_p50_ms'] or 0:.0f}/"
        f"{found['freshness_producer_to_registry_p99_ms'] or 0:.0f} ms"
    )
    return found
