"""The OpenTelemetry tracer of a service, or None when no OTLP endpoint is configured.

Every service builds its own provider (no global state: tests and benchmarks run several apps
in one process) and exports over OTLP/HTTP from a background thread (the SDK's batch span
processor), so a call never waits on the collector. With no endpoint nothing is built, and a
service's hooks are skipped by one `is None` test. Sampling, batch sizes and exporter headers
follow the SDK's standard variables (`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`,
`OTEL_EXPORTER_OTLP_HEADERS`).
"""

from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from capps_events import TraceContext
from capps_kit.settings import ServiceSettings

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True, slots=True)
class Tracing:
    """A service's tracer and the provider that exports its spans."""

    tracer: trace.Tracer
    provider: TracerProvider

    def shutdown(self) -> None:
        """Export what is still buffered and stop (blocking: call from a thread at exit)."""
        self.provider.shutdown()


def traces_endpoint(base: str) -> str:
    """The OTLP/HTTP traces URL of a base endpoint, as the standard variable means it."""
    return base.rstrip("/") + TRACES_PATH


def open_tracing(settings: ServiceSettings, service_name: str, scope: str) -> Tracing | None:
    """The service's tracing when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else None."""
    endpoint = settings.otel_exporter_otlp_endpoint.strip()
    if not endpoint:
        return None
    resource = Resource.create(
        {
            SERVICE_NAME: settings.otel_service_name or service_name,
            SERVICE_INSTANCE_ID: settings.instance_id,
        }
    )
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(traces_endpoint(endpoint))))
    return Tracing(provider.get_tracer(scope), provider)


def span_context_of(context: TraceContext, *, remote: bool = True) -> trace.SpanContext:
    """An event's or a caller's trace context as OpenTelemetry's span context."""
    return trace.SpanContext(
        context.trace_id,
        context.span_id,
        is_remote=remote,
        trace_flags=trace.TraceFlags(context.flags & 0xFF),
        trace_state=(
            trace.TraceState.from_header([context.tracestate]) if context.tracestate else None
        ),
    )


def trace_context_of(span: trace.Span) -> TraceContext:
    """A span's context as the event contract carries it."""
    context = span.get_span_context()
    state = context.trace_state.to_header() if context.trace_state else None
    return TraceContext(context.trace_id, context.span_id, int(context.trace_flags), state or None)
