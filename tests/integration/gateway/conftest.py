"""Fixtures for the gateway's integration tests: a JWKS server, upstreams, gateways, topics.

The gateway and the demo API run as real subprocesses (`python -m ...`) on free ports; the
registry is stood in for by a tiny local JWKS server signed with a key made here and by app
states published here to a compacted apps topic; Kafka is the real one from the `infra`
fixture, with topics unique to this run.
"""

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from joserfc import jwt
from joserfc.jwk import RSAKey

from capps_events import (
    AppState,
    RateLimit,
    RequestEvent,
    TopicSpec,
    decode_request,
    encode_app_deleted,
    encode_app_state,
)
from capps_kit.kafka import make_producer
from capps_kit.settings import API_AUDIENCE
from tests.infra import free_port, running_process, throwaway_topics

REPO = Path(__file__).resolve().parents[3]
ISSUER = "http://issuer.gateway-test"
AUDIENCE = API_AUDIENCE
TENANT = f"tenant-{uuid.uuid4().hex[:8]}"
START_TIMEOUT_S = 90.0
EVENT_PARTITIONS = 3
APP_PARTITIONS = 3
DEFAULT_APP = f"app-test-{uuid.uuid4().hex[:8]}"
"""The app of tokens that name no client_id; its state is published before any gateway starts."""
ALL_ROLES = [
    "Alert.Read.All",
    "Alert.ReadWrite.All",
    "Machine.Read.All",
    "Machine.Isolate",
    "AdvancedQuery.Read.All",
    "Ti.ReadWrite.All",
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Signer:
    """Signs access tokens like the registry does, with keys the JWKS server publishes."""

    keys: dict[str, RSAKey] = field(default_factory=dict)

    def add_key(self, kid: str) -> RSAKey:
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
        self.keys[kid] = key
        return key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self.keys.values()]}

    def token(
        self, roles: list[str], *, kid: str | None = None, key: RSAKey | None = None, **claims: Any
    ) -> str:
        kid = kid or next(iter(self.keys))
        now = int(time.time())
        app_id = claims.pop("client_id", DEFAULT_APP)
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": app_id,
            "client_id": app_id,
            "tid": TENANT,
            "roles": roles,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
        return jwt.encode(header, payload, key or self.keys[kid])


@dataclass(frozen=True)
class Gateway:
    """A running gateway subprocess."""

    url: str
    admin_url: str
    instance_id: str
    pid: int = 0


@dataclass
class AppStates:
    """Publishes app states to the run's apps topic, as the registry's outbox does."""

    producer: AIOKafkaProducer
    topic: str
    versions: dict[str, int] = field(default_factory=dict)

    async def put(
        self,
        app_id: str,
        *,
        permissions: list[str] | None = None,
        enabled: bool = True,
        tokens_valid_after: datetime = EPOCH,
        tenant_id: str = TENANT,
        rate_limit: RateLimit | None = None,
        issuer: str | None = None,
    ) -> AppState:
        """Publish the app's next state (version + 1) and wait for Kafka to acknowledge it."""
        version = self.versions.get(app_id, 0) + 1
        self.versions[app_id] = version
        now = datetime.now(UTC)
        state = AppState(
            app_id=app_id,
            tenant_id=tenant_id,
            enabled=enabled,
            permissions=list(ALL_ROLES if permissions is None else permissions),
            rate_limit=rate_limit or RateLimit(per_minute=100_000, per_hour=1_000_000),
            tokens_valid_after=tokens_valid_after,
            version=version,
            updated_at=now,
            issuer=issuer,
        )
        record = encode_app_state(state, "//capps/test")
        await self.producer.send_and_wait(
            self.topic, key=record.key, value=record.value, headers=record.headers
        )
        return state

    async def delete(self, app_id: str) -> None:
        """Publish the app's tombstone."""
        version = self.versions.get(app_id, 0) + 1
        self.versions[app_id] = version
        record = encode_app_deleted(app_id, version, datetime.now(UTC), "//capps/test")
        await self.producer.send_and_wait(
            self.topic, key=record.key, value=record.value, headers=record.headers
        )

    async def raw(self, key: bytes | None, value: bytes | None) -> None:
        """Publish an arbitrary record (to check that bad ones are survived)."""
        await self.producer.send_and_wait(self.topic, key=key, value=value)


@dataclass
class EventLog:
    """Every event of the test topic seen so far, by request id."""

    consumer: AIOKafkaConsumer
    partitions: list[TopicPartition]
    by_request: dict[str, list[RequestEvent]] = field(default_factory=lambda: defaultdict(list))

    async def _poll(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                event = decode_request(record.value, record.headers)
                self.by_request[event.request_id].append(event)

    async def wait_for(self, request_ids: list[str], timeout_s: float = 20.0) -> None:
        """Read until every id has an event, then to the end of every partition."""
        deadline = time.monotonic() + timeout_s
        while not all(rid in self.by_request for rid in request_ids):
            if time.monotonic() > deadline:
                missing = [rid for rid in request_ids if rid not in self.by_request]
                pytest.fail(f"no event for request ids {missing} within {timeout_s} s")
            await self._poll()
        ends = await self.consumer.end_offsets(self.partitions)
        while await self._behind(ends):
            await self._poll()

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await self.consumer.position(tp) < end:
                return True
        return False


@pytest.fixture(scope="session")
def tenant_id() -> str:
    """The tenant every token of this run is issued for."""
    return TENANT


@pytest.fixture(scope="session")
def dead_upstream_url() -> str:
    """An address nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def streamed_body() -> bytes:
    """What the odd upstream's streamed route answers."""
    return STREAMED_CHUNK * STREAMED_CHUNKS


@pytest.fixture(scope="session")
def signer() -> Signer:
    found = Signer()
    found.add_key(f"test-{uuid.uuid4().hex[:8]}")
    return found


@pytest.fixture(scope="session")
async def jwks_url(signer: Signer) -> AsyncIterator[str]:
    """A stand-in registry: serves the signer's current JWKS."""

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(signer.jwks())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    async with _serve(app) as url:
        yield url


STREAMED_CHUNK = b"x" * 65536
STREAMED_CHUNKS = 40


@pytest.fixture(scope="session")
async def odd_upstream_url() -> AsyncIterator[str]:
    """An upstream that is too slow on one route, streams on another, sets cookies on a third."""

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"value": []})

    async def streamed(request: web.Request) -> web.StreamResponse:
        # Chunked, no Content-Length, larger than the gateway buffers: it must stream it through.
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(STREAMED_CHUNKS):
            await response.write(STREAMED_CHUNK)
        await response.write_eof()
        return response

    async def cookies(request: web.Request) -> web.Response:
        # Sets a cookie and echoes the Cookie header it got: the gateway must keep no jar.
        response = web.json_response({"cookie": request.headers.get("Cookie")})
        response.set_cookie("session", f"of-{request.match_info['id']}")
        return response

    app = web.Application()
    app.router.add_get("/api/alerts", slow)
    app.router.add_get("/api/alerts/{id}", cookies)
    app.router.add_get("/api/machines", streamed)
    async with _serve(app) as url:
        yield url


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
async def events_topic(infra: Any) -> AsyncIterator[str]:
    """A topic of this test run only, removed afterwards."""
    name = f"capps.requests.v1.test-gateway-{uuid.uuid4().hex[:12]}"
    spec = TopicSpec(name, partitions=EVENT_PARTITIONS)
    async with throwaway_topics(infra.kafka_bootstrap_servers, [spec]):
        yield name


@pytest.fixture(scope="session")
async def apps_topic(infra: Any) -> AsyncIterator[str]:
    """A compacted apps topic of this test run only, removed afterwards."""
    name = f"capps.apps.v1.test-gateway-{uuid.uuid4().hex[:12]}"
    spec = TopicSpec(name, partitions=APP_PARTITIONS, configs={"cleanup.policy": "compact"})
    async with throwaway_topics(infra.kafka_bootstrap_servers, [spec]):
        yield name


@pytest.fixture(scope="session")
async def apps(infra: Any, apps_topic: str) -> AsyncIterator[AppStates]:
    """The app state publisher; the default app is published with every permission."""
    producer = make_producer(
        infra.kafka_bootstrap_servers, f"gateway-test-{uuid.uuid4().hex}", infra.kafka_security
    )
    await producer.start()
    try:
        states = AppStates(producer, apps_topic)
        await states.put(DEFAULT_APP)
        yield states
    finally:
        await producer.stop()


@pytest.fixture(scope="session")
async def event_log(infra: Any, events_topic: str) -> AsyncIterator[EventLog]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **infra.kafka_options,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(events_topic, p) for p in range(EVENT_PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        yield EventLog(consumer, partitions)
    finally:
        await consumer.stop()


def _process(
    args: list[str], env: dict[str, str], log_path: Path
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return running_process([sys.executable, *args], env, log_path, cwd=REPO)


def _tail(log_path: Path) -> str:
    return log_path.read_text()[-4000:]


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{url} exited early:\n{_tail(log_path)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    pytest.fail(f"{url} not ready in {START_TIMEOUT_S} s:\n{_tail(log_path)}")


@pytest.fixture(scope="session")
async def demo_api_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("demo-api") / "demo-api.log"
    env = {"DEMO_API_HOST": "127.0.0.1", "DEMO_API_PORT": str(port), "LOG_LEVEL": "warning"}
    with _process(["-m", "capps_demo_api"], env, log_path) as process:
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(f"{url}/healthz", process, log_path)
        yield url


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture(scope="session")
async def start_gateway(
    infra: Any,
    jwks_url: str,
    events_topic: str,
    apps: AppStates,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[StartGateway]:
    """Starts `python -m capps_gateway` subprocesses; all are stopped at the end."""
    stack = contextlib.ExitStack()

    async def start(
        upstream_url: str,
        *,
        timeout_s: float = 10.0,
        extra_env: dict[str, str] | None = None,
        ready_path: str = "/readyz",
    ) -> Gateway:
        port, admin_port = free_port(), free_port()
        instance_id = f"gw-test-{uuid.uuid4().hex[:8]}"
        log_path = tmp_path_factory.mktemp("gateway") / f"{instance_id}.log"
        env = {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_ADMIN_PORT": str(admin_port),
            "GATEWAY_UPSTREAM_URL": upstream_url,
            "GATEWAY_UPSTREAM_TIMEOUT_S": str(timeout_s),
            "GATEWAY_EVENTS_TOPIC": events_topic,
            "GATEWAY_APPS_TOPIC": apps.topic,
            "GATEWAY_APP_WAIT_S": "2.0",
            "REGISTRY_URL": jwks_url,
            "TOKEN_ISSUER": ISSUER,
            "TOKEN_AUDIENCE": AUDIENCE,
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
            "CATALOG_PATH": str(REPO / "config" / "catalog.yaml"),
            "INSTANCE_ID": instance_id,
            "LOG_LEVEL": "INFO",
            "ENVIRONMENT": "test",
            "REDIS_URL": infra.redis_url,
            # Its own spool and journal: a directory belongs to one process.
            "GATEWAY_SPOOL_DIR": str(log_path.parent / "spool"),
            "GATEWAY_WORKERS": "1",
            **(extra_env or {}),
        }
        process = stack.enter_context(_process(["-m", "capps_gateway"], env, log_path))
        admin_url = f"http://127.0.0.1:{admin_port}"
        await _wait_ready(f"{admin_url}{ready_path}", process, log_path)
        return Gateway(f"http://127.0.0.1:{port}", admin_url, instance_id, process.pid)

    with stack:
        yield start


@pytest.fixture(scope="session")
async def gateway(start_gateway: StartGateway, demo_api_url: str) -> Gateway:
    """The gateway in front of the demo API."""
    return await start_gateway(demo_api_url)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No cookie jar: a cookie a test sees must come from the gateway, not from this client.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """A Kafka broker of this test's own, to kill, pause and restart."""
    from .publisher_rig import started_broker

    yield from started_broker(tmp_path)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KB tmpfs of this test's own (mounting needs root), unmounted afterwards."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a 256 KB tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def metric_sample(http: aiohttp.ClientSession, gateway: Gateway, exact: str) -> float:
    """The value of one sample, named with its labels as /metrics prints them (0 if absent)."""
    async with http.get(f"{gateway.admin_url}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == exact:
            return float(value)
    return 0.0
