"""A gateway killed (SIGKILL) under load loses no answered call.

Calls run against a gateway until some hundreds are answered, then the process is killed.
A new gateway on the same spool directory recovers the journal; every call that got its whole
answer must then be on the events topic, or (if Kafka may have had it when the process died)
set aside in the ambiguous spool for reconciliation (those may be on the topic too: Kafka
may have written them), never twice on the topic, never nowhere.
"""

import asyncio
import contextlib
import os
import signal
import uuid
from pathlib import Path

import aiohttp
import pytest

from capps_events import decode_request
from capps_gateway.spool import Spool

from .conftest import ALL_ROLES, EventLog, Signer, StartGateway

pytestmark = pytest.mark.integration

CLIENTS = 16
KILL_AFTER = 600


def ambiguous_request_ids(spool_dir: Path) -> set[str]:
    spool = Spool(spool_dir / "ambiguous")
    return {
        decode_request(record.value, record.headers).request_id
        for segment in spool.sealed_segments()
        for record in spool.read(segment)[0]
    }


@pytest.mark.timeout(240)
async def test_a_killed_gateway_loses_no_answered_call(
    start_gateway: StartGateway,
    demo_api_url: str,
    signer: Signer,
    event_log: EventLog,
    tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "spool"
    env = {"GATEWAY_SPOOL_DIR": str(spool_dir)}
    gateway = await start_gateway(demo_api_url, extra_env=env)
    token = signer.token(ALL_ROLES)
    answered: list[str] = []
    enough = asyncio.Event()

    async def client(http: aiohttp.ClientSession) -> None:
        while True:
            request_id = uuid.uuid4().hex
            try:
                async with http.get(
                    f"{gateway.url}/api/alerts",
                    headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
                ) as response:
                    await response.read()
            except aiohttp.ClientError:
                return  # the gateway died under this call: it was never answered
            answered.append(request_id)
            if len(answered) >= KILL_AFTER:
                enough.set()

    async with aiohttp.ClientSession() as http:
        clients = [asyncio.create_task(client(http)) for _ in range(CLIENTS)]
        await asyncio.wait_for(enough.wait(), 120)
        os.kill(gateway.pid, signal.SIGKILL)
        done, _ = await asyncio.wait(clients, timeout=60)
        assert len(done) == CLIENTS
        for task in clients:
            with contextlib.suppress(Exception):
                task.result()

    # The successor recovers the journal: never-sent events go to the spool and are replayed.
    await start_gateway(demo_api_url, extra_env=env)
    ambiguous = ambiguous_request_ids(spool_dir)
    delivered = [rid for rid in answered if rid not in ambiguous]
    await event_log.wait_for(delivered, timeout_s=120)
    lost = [rid for rid in answered if rid not in event_log.by_request and rid not in ambiguous]
    doubled = [rid for rid in answered if len(event_log.by_request.get(rid, [])) > 1]
    assert not lost, f"{len(lost)} of {len(answered)} answered calls lost"
    assert not doubled
    # Only what was in flight at the kill can be ambiguous, never the bulk.
    assert len(ambiguous) < len(answered) / 2
