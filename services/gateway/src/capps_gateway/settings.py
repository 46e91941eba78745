"""The gateway's settings, read from the environment (defaults fit the local stack)."""

import os
from pathlib import Path

from pydantic import Field

from capps_events import APPS_TOPIC, REQUESTS_TOPIC
from capps_kit.settings import KafkaSettings, RedisSettings, ServiceSettings, TokenSettings


class GatewaySettings(ServiceSettings, KafkaSettings, RedisSettings, TokenSettings):
    """Where the gateway listens, what it proxies to and whom it trusts."""

    gateway_host: str = "127.0.0.1"
    # Worker processes behind the one port (SO_REUSEPORT), each with its own app view,
    # producer and spool subdirectory; the supervisor serves the admin port.
    gateway_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    gateway_port: int = 8000
    gateway_admin_port: int = 8001
    gateway_upstream_url: str = "http://127.0.0.1:8090"
    gateway_upstream_timeout_s: float = 10.0
    # Below the upstream's own keep-alive timeout (uvicorn's default is 5 s), so the gateway
    # closes idle connections first and never writes to one the upstream is closing.
    gateway_upstream_idle_timeout_s: float = 3.0
    gateway_upstream_max_connections: int = 1024
    # Calls in progress per process; past it, 503 `overloaded` with Retry-After: 1.
    gateway_max_in_flight: int = 1024
    # Request line + headers larger than this answer 431; headers (and a body) that take
    # longer than the read timeout to arrive close the connection (408 when still possible).
    gateway_max_header_bytes: int = 16 * 1024
    gateway_header_timeout_s: float = 10.0
    gateway_body_timeout_s: float = 30.0
    # On SIGTERM: how long calls in progress may take before their connections are dropped
    # (then as long again for their handlers); below Kubernetes' 30 s grace with the events'
    # flush (GATEWAY_EVENTS_FLUSH_TIMEOUT_S) after it. What is not flushed stays journaled.
    gateway_shutdown_grace_s: float = Field(default=10.0, gt=0, le=300)
    gateway_events_topic: str = REQUESTS_TOPIC
    gateway_apps_topic: str = APPS_TOPIC
    # How long a valid token of an app the local view does not know yet waits for its state
    # (an app created a moment ago) before it is refused.
    gateway_app_wait_s: float = 2.0
    registry_url: str = "http://127.0.0.1:8080"
    catalog_path: Path | None = None
    # Rate limits are shared through Redis (REDIS_URL); a check waits at most this for it.
    gateway_ratelimit_timeout_s: float = 0.25
    # While Redis is away each process admits limit // this: the number of gateway processes
    # sharing the limits (all hosts), so together they stay within the limit.
    gateway_ratelimit_fallback_processes: int = 1
    # The most tokens one process leases per app ahead of its calls (0: no leases, one Redis
    # round trip per batch of checks and exact headers, as for an app that calls rarely).
    gateway_ratelimit_lease_max: int = Field(default=4096, ge=0, le=1_000_000)
    # External identity providers whose access tokens the gateway accepts too (YAML or JSON;
    # see auth/issuers.py and the README). None: only the registry's own tokens.
    gateway_issuers_file: Path | None = None

    @property
    def jwks_url(self) -> str:
        """The registry's JWKS document."""
        return self.registry_url.rstrip("/") + "/.well-known/jwks.json"

    # Request events that cannot reach Kafka wait here (segment files), replayed once it answers.
    gateway_spool_dir: Path = Path(".local/gateway/spool")
    gateway_spool_segment_bytes: int = 4 * 1024 * 1024
    # The spool's cap (bytes); past it, or on a full disk, events are dropped, counted in
    # capps_gateway_events_lost_total, and /readyz fails. ~300 bytes an event: 1 GiB ~ 3.5 M.
    gateway_spool_max_bytes: int = 1024 * 1024 * 1024
    # Events buffered in memory before the drain task; past this the backlog goes to disk.
    gateway_events_buffer_max: int = 100_000
    # Events handed to the producer and not yet acknowledged; past this new ones spool.
    gateway_events_in_flight_max: int = 20_000
    # A batch unacknowledged this long means Kafka is not answering: spool until it does.
    gateway_events_stall_s: float = 2.0
    # How long a stopping gateway waits for acknowledgements before spooling what is left.
    gateway_events_flush_timeout_s: float = 5.0
    # How long the drain gathers events before handing them to Kafka. Each hand-over costs
    # the same whatever its size (measured at 1,400 calls/s: 5 ms cost ~150 CPU µs per event
    # in all, 20 ms ~120, 50 ms ~105); it adds to the call -> count delay, whose target is
    # 250 ms. Events are in the journal before the answer either way.
    gateway_events_linger_s: float = Field(default=0.02, ge=0.0, le=1.0)
