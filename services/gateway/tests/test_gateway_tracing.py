"""A call's server span continues the caller's trace; the upstream gets the gateway's context."""

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from capps_catalog import load_catalog
from capps_events import TraceContext
from capps_gateway.call import Call
from capps_gateway.routes import RouteTable
from capps_gateway.tracing import caller_context, traced_calls, with_trace_headers

CALLER = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_callers_context_is_read_and_a_malformed_one_ignored() -> None:
    found = caller_context([(b"traceparent", CALLER), (b"tracestate", b"ven=1")])
    assert found is not None
    assert found.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert found.tracestate == "ven=1"
    assert caller_context([(b"traceparent", b"00-nonsense")]) is None
    assert caller_context([]) is None


def test_the_upstream_gets_the_gateways_context_instead_of_the_callers() -> None:
    mine = TraceContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x1234, 1, "ven=2")
    headers = [(b"accept", b"*/*"), (b"traceparent", CALLER), (b"tracestate", b"ven=1")]
    assert with_trace_headers(headers, mine) == [
        (b"accept", b"*/*"),
        (b"traceparent", mine.traceparent.encode()),
        (b"tracestate", b"ven=2"),
    ]


class _Recorder:
    """The connection side of a call: keeps what is written."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.date_line = b""
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    async def drained(self) -> None:
        return None

    def call_done(self, call: Call) -> None:
        return None

    def want_body(self) -> None:
        return None


async def _call(
    headers: list[tuple[bytes, bytes]], status: int, sampler: Sampler | None = None
) -> tuple[InMemorySpanExporter, int]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen_trace_id = 0

    routes = RouteTable(load_catalog(None).routes)

    async def handler(call: Call) -> None:
        nonlocal seen_trace_id
        seen_trace_id = get_current_span().get_span_context().trace_id
        # As the gateway's handler does: it leaves the route it matched on the call.
        match = routes.match(call.method, call.path)
        if match is not None:
            call.route = match.route.template
        call.request_id = "req-1"
        call.respond(status, [(b"x-request-id", b"req-1")], b"{}")

    connection = _Recorder()
    call = Call(connection, "GET", "/api/alerts/42", b"", headers, client_ip="192.0.2.7")
    await traced_calls(provider.get_tracer("t"), handler)(call)
    (answer,) = connection.written
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert answer.endswith(b"\r\n\r\n{}")
    return exporter, seen_trace_id


async def test_a_call_with_a_traceparent_continues_the_callers_trace() -> None:
    exporter, seen = await _call([(b"traceparent", CALLER)], 200)
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /api/alerts/{id}"
    assert span.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736 == seen
    assert span.parent is not None
    assert span.parent.span_id == 0x00F067AA0BA902B7
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["capps.request_id"] == "req-1"


async def test_a_call_with_a_malformed_traceparent_starts_a_trace_and_is_served() -> None:
    exporter, seen = await _call([(b"traceparent", b"00-garbage-01")], 502)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.context.trace_id == seen != 0
    assert span.status.status_code is StatusCode.ERROR


async def test_a_call_left_out_by_the_sampler_makes_no_span_but_carries_the_trace_on() -> None:
    exporter, seen = await _call(
        [(b"traceparent", CALLER[:-2] + b"00")], 200, ParentBased(ALWAYS_OFF)
    )
    assert exporter.get_finished_spans() == ()
    assert seen == 0x4BF92F3577B34DA6A3CE929D0E0E4736
