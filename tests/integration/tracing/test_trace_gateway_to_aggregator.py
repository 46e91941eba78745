"""One partner call, one trace: the gateway's spans and the aggregator's batch, in a collector.

A real gateway and a real aggregator worker export to a real OpenTelemetry Collector (built
from deploy/otel-collector) that writes what it receives to a file. The partner sends a W3C
`traceparent`; the test waits until the file holds the gateway's server span continuing that
trace, its upstream call's span (whose context the upstream received), the span of the event
produced, and the aggregator's batch span linking to that event's context, with the
PostgreSQL and Redis write spans under it.
"""

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.infra import free_port
from tests.integration.aggregator.conftest import StartWorker, Topics
from tests.integration.aggregator.worker_process import http_get, poll
from tests.integration.gateway.conftest import ALL_ROLES, AppStates, Signer, StartGateway
from tests.integration.tracing.collector import Collector, Span

pytestmark = pytest.mark.integration

WAIT_S = 120.0
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP span kinds
# The SDK's batch processor sends every 5 s by default; the test need not wait that long.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "200"}


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[str]]]:
    """An upstream that records the `traceparent` of each call it gets."""
    received: list[str] = []

    async def alerts(request: web.Request) -> web.Response:
        received.append(request.headers.get("traceparent", ""))
        return web.json_response({"value": []})

    app = web.Application()
    app.router.add_get("/api/alerts", alerts)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        await runner.cleanup()


async def _answers_200(url: str) -> bool:
    try:
        status, _ = await asyncio.to_thread(http_get, url)
    except OSError:  # not listening yet
        return False
    return status == 200


async def _trace_in_collector(
    collector: Collector, trace_id: str, request_id: str
) -> dict[str, Span]:
    """The four spans of the call, once the collector has written them all."""
    deadline = time.monotonic() + WAIT_S
    while True:
        spans = await asyncio.to_thread(collector.spans)
        found = _call_spans(spans, trace_id, request_id)
        if len(found) == 4:
            return found
        assert time.monotonic() < deadline, (
            f"not all spans of trace {trace_id} arrived in {WAIT_S} s; have {sorted(found)} "
            f"of {len(spans)} spans: {[(s.service, s.name, s.trace_id) for s in spans][:20]}"
        )
        await asyncio.sleep(0.2)


def _call_spans(spans: list[Span], trace_id: str, request_id: str) -> dict[str, Span]:
    found: dict[str, Span] = {}
    for span in spans:
        if span.trace_id == trace_id and span.attributes.get("capps.request_id") == request_id:
            role = {SERVER: "server", CLIENT: "upstream", PRODUCER: "produce"}.get(span.kind)
            if role is not None and span.service == "capps-gateway":
                found[role] = span
    produce = found.get("produce")
    for span in spans:
        if (
            produce is not None
            and span.service == "capps-usage-aggregator"
            and span.kind == CONSUMER
            and (trace_id, produce.span_id) in span.links
        ):
            found["batch"] = span
    return found


@pytest.mark.timeout(2400)  # the first run may build the collector from scratch
async def test_a_partner_call_is_traced_from_the_gateway_to_its_aggregator_batch(
    *,
    collector: Collector,
    start_gateway: StartGateway,
    workers: StartWorker,
    worker_env: dict[str, str],
    topics: Topics,
    hot: Any,
    apps: AppStates,
    signer: Signer,
    run_id: str,
    upstream: tuple[str, list[str]],
) -> None:
    tracing_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, **FAST_EXPORT}
    worker = workers(**tracing_env)
    ready = f"http://127.0.0.1:{worker_env['AGGREGATOR_PORT']}/readyz"
    await poll(lambda: _answers_200(ready), worker, "the aggregator to be ready")
    upstream_url, received = upstream
    gateway = await start_gateway(
        upstream_url, extra_env={"GATEWAY_EVENTS_TOPIC": topics.requests, **tracing_env}
    )
    app_id = f"app-{run_id}-traced"
    await apps.put(app_id)
    token = signer.token(ALL_ROLES, client_id=app_id)

    trace_id, caller_span_id = secrets.token_hex(16), secrets.token_hex(8)
    request_id = f"trace-{run_id}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{gateway.url}/api/alerts",
            headers={
                "Authorization": f"Bearer {token}",
                "X-Request-Id": request_id,
                "traceparent": f"00-{trace_id}-{caller_span_id}-01",
                "tracestate": "partner=abc",
            },
        ) as response,
    ):
        assert response.status == 200
        await response.read()

    spans = await _trace_in_collector(collector, trace_id, request_id)
    server, upstream_call, produce, batch = (
        spans[role] for role in ("server", "upstream", "produce", "batch")
    )
    # The gateway continues the partner's trace...
    assert server.parent_span_id == caller_span_id
    assert server.name == "GET /api/alerts"
    assert server.attributes["http.response.status_code"] == 200
    # ...the upstream call and the event are its children...
    assert upstream_call.parent_span_id == server.span_id
    assert upstream_call.attributes["http.response.status_code"] == 200
    assert produce.parent_span_id == server.span_id
    assert produce.attributes["capps.app_id"] == app_id
    # ...the upstream saw the gateway's upstream span as its parent, not the partner's span...
    assert received == [f"00-{trace_id}-{upstream_call.span_id}-01"]
    # ...and the aggregator's batch, a trace of its own, links to the event's producer span.
    assert batch.trace_id != trace_id
    assert (trace_id, produce.span_id) in batch.links

    # The batch's writes to PostgreSQL and Redis are its children.
    deadline = time.monotonic() + WAIT_S
    while True:
        writes = {
            span.name
            for span in await asyncio.to_thread(collector.spans)
            if span.parent_span_id == batch.span_id and span.trace_id == batch.trace_id
        }
        if writes >= {"postgresql write", "redis write"}:
            break
        assert time.monotonic() < deadline, f"write spans of the batch missing: {writes}"
        await asyncio.sleep(0.2)
