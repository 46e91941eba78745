"""A real OpenTelemetry Collector for the tests: deploy/otel-collector built, run, and read.

It receives OTLP/HTTP on a free port and writes every span it gets to a JSON-lines file
(the contrib file exporter); `spans()` reads that file back, one flat record per span.
"""

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.go_tools import go_tool
from tests.infra import free_port, running_process

START_TIMEOUT_S = 60.0
# A cold build downloads the collector's modules and compiles them: minutes on a busy machine.
BUILD_TIMEOUT_S = 1800.0

CONFIG = """\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {path}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""


@dataclass(frozen=True, slots=True)
class Span:
    """One span as the collector wrote it (ids in lower-case hex, as OTLP/JSON has them)."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Collector:
    """A running collector: where to send spans and where it writes them."""

    endpoint: str
    output: Path

    def spans(self) -> list[Span]:
        """Every span written so far (a line cut short by a write in progress is skipped)."""
        if not self.output.exists():
            return []
        found: list[Span] = []
        for line in self.output.read_text().splitlines():
            try:
                document = json.loads(line)
            except json.JSONDecodeError:
                continue
            found.extend(_spans_of(document))
        return found


def _value(attribute: dict[str, Any]) -> Any:
    value = attribute["value"]
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        return int(value["intValue"])
    return value


def _spans_of(document: dict[str, Any]) -> Iterator[Span]:
    for resource_spans in document.get("resourceSpans", []):
        resource = {
            a["key"]: _value(a) for a in resource_spans.get("resource", {}).get("attributes", [])
        }
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                yield Span(
                    service=str(resource.get("service.name", "")),
                    name=span["name"],
                    kind=int(span.get("kind", 0)),
                    trace_id=span["traceId"],
                    span_id=span["spanId"],
                    parent_span_id=span.get("parentSpanId", ""),
                    attributes={a["key"]: _value(a) for a in span.get("attributes", [])},
                    links=[(link["traceId"], link["spanId"]) for link in span.get("links", [])],
                )


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_collector(directory: Path) -> Iterator[Collector]:
    """deploy/otel-collector, built if needed, receiving on a free port until the block ends."""
    binary = go_tool("otel-collector", timeout_s=BUILD_TIMEOUT_S)
    port = free_port()
    output = directory / "spans.jsonl"
    config = directory / "collector.yaml"
    config.write_text(CONFIG.format(port=port, path=output))
    log_path = directory / "collector.log"
    args = [str(binary), f"--config={config}"]
    with running_process(args, {}, log_path, cwd=directory) as process:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"collector did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Collector(f"http://127.0.0.1:{port}", output)


def validate_config(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`otelcol validate` of a collector configuration file, with `env` as its environment."""
    binary = go_tool("otel-collector", timeout_s=BUILD_TIMEOUT_S)
    return subprocess.run(
        [str(binary), "validate", f"--config={config}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
