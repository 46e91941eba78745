"""The spans of a gateway call, built only when tracing is on (an OTLP endpoint is configured).

One SERVER span per call, continuing the caller's `traceparent` when it sent a valid one; under
it a CLIENT span around the upstream call, whose context the upstream receives as `traceparent`
(replacing the caller's), and a PRODUCER span for the call's event, whose context the event
carries in `ce_traceparent` so the aggregator's batch can link to it. A call the sampler leaves
out gets its server span only (not recording) and passes that context on, flagged not sampled.
With tracing off none of
this is constructed: the app serves calls through its plain handler, the runtime builds the
plain proxy and publisher, and the caller's `traceparent` goes upstream untouched.
"""

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from capps_events import RequestEvent, TraceContext, parse_traceparent
from capps_gateway.auth import Principal
from capps_gateway.call import Call, Handler
from capps_gateway.events import SpoolingPublisher
from capps_gateway.proxy import UpstreamError, UpstreamProxy
from capps_gateway.upstream import UpstreamPool
from capps_kit.tracing import span_context_of, trace_context_of

TRACE_HEADERS = (b"traceparent", b"tracestate")


def caller_context(headers: Sequence[tuple[bytes, bytes]]) -> TraceContext | None:
    """The trace context of the caller's `traceparent`/`tracestate`; None when absent or bad."""
    traceparent = tracestate = None
    for name, value in headers:
        if name == b"traceparent":
            traceparent = value
        elif name == b"tracestate":
            tracestate = value
    return None if traceparent is None else parse_traceparent(traceparent, tracestate)


def with_trace_headers(
    headers: Sequence[tuple[bytes, bytes]], context: TraceContext
) -> list[tuple[bytes, bytes]]:
    """The call's headers with the caller's trace headers replaced by `context`."""
    outgoing = [(name, value) for name, value in headers if name not in TRACE_HEADERS]
    outgoing.append((b"traceparent", context.traceparent.encode("ascii")))
    if context.tracestate:
        outgoing.append((b"tracestate", context.tracestate.encode("ascii")))
    return outgoing


def traced_calls(tracer: trace.Tracer, handler: Handler) -> Handler:
    """`handler` inside a SERVER span per call, named after the route template it matched."""

    async def serve(call: Call) -> None:
        caller = caller_context(call.headers)
        parent = (
            trace.set_span_in_context(trace.NonRecordingSpan(span_context_of(caller)))
            if caller is not None
            else None
        )
        method = call.method
        with tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER) as span:
            if not span.is_recording():
                # Not sampled: the span only carries the trace on; nothing to describe.
                await handler(call)
                return
            span.set_attributes({"http.request.method": method, "url.path": call.path[:512]})
            await handler(call)
            if call.status:
                span.set_attribute("http.response.status_code", call.status)
                if call.status >= 500:
                    span.set_status(StatusCode.ERROR)
            if call.request_id:
                span.set_attribute("capps.request_id", call.request_id)
            # The handler matched the route once; the span takes its name from that.
            if call.route is not None:
                span.update_name(f"{method} {call.route}")
                span.set_attribute("http.route", call.route)

    return serve


class TracedUpstreamProxy(UpstreamProxy):
    """The upstream call inside a CLIENT span; the upstream sees that span as its parent."""

    def __init__(self, pool: UpstreamPool, base_url: str, tracer: trace.Tracer) -> None:
        super().__init__(pool, base_url)
        self._tracer = tracer
        self._server_address = base_url

    async def forward(
        self,
        call: Call,
        *,
        body: bytes,
        principal: Principal,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        headers: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> int:
        """Relay the call as the plain proxy does, inside its span."""
        current = trace.get_current_span()
        method = call.method
        # A call not sampled gets no child spans (their cost is most of tracing's); the
        # upstream still hears the trace, flagged not sampled, as W3C propagation asks.
        # The span is not made current: the call's event, published while the answer is
        # relayed, belongs to the call (the server span), not to the upstream call.
        span = (
            self._tracer.start_span(
                f"{method} upstream",
                kind=SpanKind.CLIENT,
                attributes={
                    "http.request.method": method,
                    "url.full": (self._server_address.rstrip("/") + call.path)[:512],
                    "capps.request_id": call.request_id,
                },
            )
            if current.is_recording()
            else None
        )
        try:
            status = await super().forward(
                call,
                body=body,
                principal=principal,
                extra_headers=extra_headers,
                headers=with_trace_headers(
                    call.headers if headers is None else headers,
                    trace_context_of(span or current),
                ),
            )
        except UpstreamError as exc:
            if span is not None:
                span.set_attribute("error.type", "timeout" if exc.timeout else "connect")
                span.set_status(StatusCode.ERROR, str(exc))
            raise
        else:
            if span is not None:
                span.set_attribute("http.response.status_code", status)
            return status
        finally:
            if span is not None:
                span.end()


class TracedPublisher(SpoolingPublisher):
    """Publishes each event inside a PRODUCER span whose context the event carries.

    Built by `traced_publisher`: a compiled module (native.py) passes arguments forwarded
    through `super().__init__(*args, **kwargs)` on wrongly, so this class adds no __init__."""

    _tracer: trace.Tracer
    _span_name: str

    def publish(self, event: RequestEvent, context: TraceContext | None = None) -> None:  # noqa: ARG002 - the call's context replaces it
        """Journal and buffer the event as the plain publisher does, inside its span."""
        call = trace.get_current_span()
        if not call.is_recording():
            # Not sampled: no span, the event carries the call's context (flagged so).
            carried = trace_context_of(call) if call.get_span_context().is_valid else None
            super().publish(event, carried)
            return
        span = self._tracer.start_span(
            self._span_name,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": self._topic,
                "messaging.message.id": event.id,
                "capps.app_id": event.app_id,
                "capps.tenant_id": event.tenant_id,
                "capps.request_id": event.request_id,
                # Straight to Kafka, or to the spool while Kafka is not answering.
                "capps.events.spooled": not self.healthy,
            },
        )
        try:
            super().publish(event, trace_context_of(span))
        finally:
            span.end()


def traced_publisher(tracer: trace.Tracer, *args: Any, **kwargs: Any) -> TracedPublisher:
    """A TracedPublisher built with SpoolingPublisher's arguments, tracing with `tracer`."""
    publisher = TracedPublisher(*args, **kwargs)
    publisher._tracer = tracer
    publisher._span_name = f"{publisher._topic} publish"
    return publisher
