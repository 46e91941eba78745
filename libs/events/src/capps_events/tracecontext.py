"""W3C Trace Context on an event: the CloudEvents distributed tracing extension.

In the Kafka binding's binary mode the extension's attributes `traceparent` and `tracestate`
travel as the headers `ce_traceparent` and `ce_tracestate`. They only say which trace produced
the event: a missing or malformed value is read as "no trace context" (None), never as a reason
to refuse or dead-letter an otherwise good event. Parsing follows the W3C Trace Context rules
(version `ff` and all-zero ids are invalid; an unknown future version is read by its first
four fields), and a tracestate beyond the standard's bounds is dropped on its own.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

TRACEPARENT_HEADER = "ce_traceparent"
TRACESTATE_HEADER = "ce_tracestate"
MAX_TRACESTATE_BYTES = 512
MAX_TRACESTATE_MEMBERS = 32

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[ -~]*)?")
# One list member `key=value` (W3C tracestate §3.3.1), keys with an optional `tenant@system`.
_TRACESTATE_MEMBER = re.compile(
    r"[a-z0-9][a-z0-9_*/-]{0,255}(@[a-z][a-z0-9_*/-]{0,13})?"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Where an event was produced: trace id, parent span id, trace flags, and tracestate."""

    trace_id: int
    span_id: int
    flags: int
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        """The `traceparent` value (version 00)."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags & 0xFF:02x}"

    @property
    def sampled(self) -> bool:
        """Whether the producer recorded its trace (flag bit 0)."""
        return bool(self.flags & 1)


def parse_traceparent(
    value: bytes | str, tracestate: bytes | str | None = None
) -> TraceContext | None:
    """The context of a `traceparent` (and `tracestate`) value, or None when it is malformed."""
    raw = value.encode("latin-1", errors="replace") if isinstance(value, str) else value
    match = _TRACEPARENT.fullmatch(raw.strip(b" \t"))
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceContext(trace_id, span_id, int(flags_hex, 16), sane_tracestate(tracestate))


def sane_tracestate(value: bytes | str | None) -> str | None:
    """A `tracestate` value within the W3C bounds, or None (it is then simply not carried)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not text or len(text) > MAX_TRACESTATE_BYTES:
        return None
    members = [member.strip(" \t") for member in text.split(",")]
    members = [member for member in members if member]
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    if not all(_TRACESTATE_MEMBER.fullmatch(member) for member in members):
        return None
    return ",".join(members)


def trace_headers(context: TraceContext) -> list[tuple[str, bytes]]:
    """The Kafka headers carrying `context` on an event."""
    headers = [(TRACEPARENT_HEADER, context.traceparent.encode("ascii"))]
    if context.tracestate:
        headers.append((TRACESTATE_HEADER, context.tracestate.encode("ascii")))
    return headers


def trace_context(headers: Iterable[tuple[str, bytes]] | None) -> TraceContext | None:
    """The trace context an event's headers carry, or None (absent or malformed)."""
    traceparent = tracestate = None
    for name, value in headers or ():
        if name == TRACEPARENT_HEADER:
            traceparent = value
        elif name == TRACESTATE_HEADER:
            tracestate = value
    if not isinstance(traceparent, bytes):
        return None
    return parse_traceparent(traceparent, tracestate if isinstance(tracestate, bytes) else None)
