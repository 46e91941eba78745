"""A whole gateway with Kafka gone: it keeps serving, says so on /readyz, and loses no event.

Partner calls must not depend on the event bus: while the broker is down the gateway answers
as usual and spools the events; `/readyz` stays ready (the spool has room) but names Kafka in
its detail; when the broker is back every answered call's event reaches the topic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from capps_kit.kafka import make_producer
from tests.integration.gateway.conftest import AppStates

from .publisher_rig import Broker, create_topic, topic_event_ids

if TYPE_CHECKING:
    from tests.integration.gateway.conftest import Signer, StartGateway

pytestmark = pytest.mark.integration

READ = ["Alert.Read.All"]
CALLS_WHILE_DOWN = 25


async def _readiness(http: aiohttp.ClientSession, admin_url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{admin_url}/readyz") as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.timeout(300)
async def test_the_gateway_serves_and_says_so_while_kafka_is_down(
    broker: Broker, start_gateway: StartGateway, demo_api_url: str, signer: Signer
) -> None:
    events_topic = f"requests-down-{uuid.uuid4().hex[:8]}"
    apps_topic = f"apps-down-{uuid.uuid4().hex[:8]}"
    await create_topic(broker, events_topic)
    await create_topic(broker, apps_topic)
    producer = make_producer(
        broker.bootstrap, f"kafka-down-{uuid.uuid4().hex[:8]}", broker.security
    )
    await producer.start()
    app_id = f"app-down-{uuid.uuid4().hex[:8]}"
    try:
        await AppStates(producer, apps_topic).put(app_id, permissions=READ)
    finally:
        await producer.stop()
    gateway = await start_gateway(
        demo_api_url,
        extra_env={
            **broker.client_env,
            "GATEWAY_EVENTS_TOPIC": events_topic,
            "GATEWAY_APPS_TOPIC": apps_topic,
        },
    )
    token = signer.token(READ, client_id=app_id)
    answered: list[str] = []
    async with aiohttp.ClientSession() as http:

        async def call() -> int:
            request_id = f"down-{uuid.uuid4()}"
            headers = {"Authorization": f"Bearer {token}", "X-Request-Id": request_id}
            async with http.get(f"{gateway.url}/api/alerts", headers=headers) as response:
                await response.read()
                if response.status == 200:
                    answered.append(request_id)
                return response.status

        assert await call() == 200
        status, body = await _readiness(http, gateway.admin_url)
        assert (status, body["ready"]) == (200, True)

        broker.kill()
        # Every call is still answered, while Kafka refuses connections.
        assert [await call() for _ in range(CALLS_WHILE_DOWN)] == [200] * CALLS_WHILE_DOWN

        async def kafka_named_but_ready() -> bool:
            status, body = await _readiness(http, gateway.admin_url)
            return status == 200 and body["ready"] and body["checks"]["kafka"] != "ok"

        await _poll(kafka_named_but_ready, 60, "/readyz to name Kafka while staying ready")
        _, body = await _readiness(http, gateway.admin_url)
        assert "kafka" in body["checks"]["kafka"].lower(), body

        broker.start()
        await _poll(
            lambda: _kafka_ok(http, gateway.admin_url), 120, "/readyz to say kafka ok again"
        )

    async def all_delivered() -> bool:
        found = await topic_event_ids(broker, events_topic)
        return len(found) >= len(answered)

    await _poll(all_delivered, 120, "every answered call's event on the topic")
    found = await topic_event_ids(broker, events_topic)
    assert len(found) == len(answered) == CALLS_WHILE_DOWN + 1
    assert len(set(found)) == len(found), "an event was written twice"


async def _kafka_ok(http: aiohttp.ClientSession, admin_url: str) -> bool:
    status, body = await _readiness(http, admin_url)
    return status == 200 and body["checks"]["kafka"] == "ok"


async def _poll(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Await `check()` until it is true; fail naming `what` past a generous deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
