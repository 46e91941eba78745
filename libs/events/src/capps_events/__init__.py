"""The event contract: every service imports topic names, models and the codec from here."""

from capps_events.codec import (
    DecodeError,
    KafkaRecord,
    decode_app_state,
    decode_request,
    encode_app_deleted,
    encode_app_state,
    encode_request,
)
from capps_events.models import (
    AppState,
    RateLimit,
    RequestEvent,
    new_event_id,
    normalise_issuer,
    token_predates,
)
from capps_events.topics import APPS_TOPIC, REQUESTS_DLQ_TOPIC, REQUESTS_TOPIC, TOPICS, TopicSpec
from capps_events.tracecontext import TraceContext, parse_traceparent, trace_context
from capps_events.validation import InvalidEventError, TimeWindow, validate_request

__all__ = [
    "APPS_TOPIC",
    "REQUESTS_DLQ_TOPIC",
    "REQUESTS_TOPIC",
    "TOPICS",
    "AppState",
    "DecodeError",
    "InvalidEventError",
    "KafkaRecord",
    "RateLimit",
    "RequestEvent",
    "TimeWindow",
    "TopicSpec",
    "TraceContext",
    "decode_app_state",
    "decode_request",
    "encode_app_deleted",
    "encode_app_state",
    "encode_request",
    "new_event_id",
    "normalise_issuer",
    "parse_traceparent",
    "token_predates",
    "trace_context",
    "validate_request",
]
