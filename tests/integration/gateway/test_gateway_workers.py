"""GATEWAY_WORKERS=2: two processes serve one port, metrics aggregate, SIGTERM drains both."""

import asyncio
import os
import signal
import uuid
from collections import Counter

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ALL_ROLES, EventLog, Signer, StartGateway

pytestmark = pytest.mark.integration

CALLS = 200


def requests_counted(text: str) -> float:
    """The sum of capps_gateway_requests_total over routes and statuses."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "capps_gateway_requests"
        for sample in family.samples
        if sample.name == "capps_gateway_requests_total"
    )


@pytest.mark.timeout(180)
async def test_two_workers_serve_one_port_aggregate_metrics_and_drain_on_sigterm(
    start_gateway: StartGateway,
    demo_api_url: str,
    signer: Signer,
    event_log: EventLog,
) -> None:
    gateway = await start_gateway(demo_api_url, extra_env={"GATEWAY_WORKERS": "2"})
    token = signer.token(ALL_ROLES)
    request_ids = [uuid.uuid4().hex for _ in range(CALLS)]
    # A fresh connection per call, so the kernel spreads them over both workers.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def call(request_id: str) -> int:
            async with http.get(
                f"{gateway.url}/api/alerts",
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
            ) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(call(rid) for rid in request_ids))
        assert set(statuses) == {200}
        async with http.get(f"{gateway.admin_url}/metrics") as response:
            metrics_text = await response.text()
        async with http.get(f"{gateway.admin_url}/readyz") as response:
            ready = await response.json()
    assert ready["ready"] is True
    assert set(ready["checks"]) == {"worker-0", "worker-1"}
    # Both workers' counters, summed by the supervisor's admin port.
    assert requests_counted(metrics_text) >= CALLS

    # SIGTERM to the supervisor: both workers finish and flush their events, then all exit.
    os.kill(gateway.pid, signal.SIGTERM)
    await event_log.wait_for(request_ids, timeout_s=60)
    served_by = Counter(event_log.by_request[rid][0].gateway for rid in request_ids)
    assert set(served_by) == {f"{gateway.instance_id}-w0", f"{gateway.instance_id}-w1"}
    for rid in request_ids:
        assert len(event_log.by_request[rid]) == 1
