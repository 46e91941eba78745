"""`--only edge`: one gateway process against one nginx worker, same fast static upstream.

Side by side in the same run, rounds interleaved: a static 7.6 KB JSON served by its own nginx
(the upstream), an nginx worker proxying to it (reference), and one gateway process proxying to
it with every per-call step on (token cache hit, app view with 100,000 apps, rate limit through
Redis, journal, event to Kafka). Besides req/s and p50/p99 (wrk, 32 connections): CPU µs per
call of the proxy process (its /proc utime+stime over the run / calls), the gateway's RSS with
100,000 apps in its view, and the rate limiter's cost per check (50 concurrent callers, in
this process, against the stack's Redis). The gateway reads a bench-owned apps topic, removed
afterwards, so the stack's own topic is untouched.
"""

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.machine import ROOT
from bench.nginx import nginx_path, spare_port
from bench.progress import say, ticking
from bench.wrk import LoadResult, run_wrk
from capps_events import AppState, RateLimit, TopicSpec, encode_app_state
from capps_kit.kafka import ensure_topics, make_admin, make_producer
from tests.infra import kafka_security

PATH = "/api/alerts"
APPS_IN_VIEW = 100_000
BODY_BYTES = 7_600
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class EdgeRun:
    """The side-by-side results and the extra figures."""

    rounds: dict[str, list[LoadResult]]
    cpu_us_per_call: dict[str, float]
    gateway_rss_mb: float
    limiter: dict[str, float]
    profile: dict[str, float]


def static_body() -> bytes:
    """A deterministic JSON list of alerts of about 7.6 KB, like the demo API's answer."""
    items: list[dict[str, str]] = []
    n = 0
    while len(json.dumps({"value": items})) < BODY_BYTES - 160:
        items.append(
            {
                "id": f"da{n:016d}",
                "title": "Suspicious process injection observed",
                "severity": ["low", "medium", "high"][n % 3],
                "status": "new",
                "machineId": f"m-{n:08d}",
            }
        )
        n += 1
    return json.dumps({"value": items}).encode().ljust(BODY_BYTES)


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def _nginx(config: str, workdir: Path) -> Iterator[subprocess.Popen[str]]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [nginx_path(), "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", "nginx.conf"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _nginx_config(workdir: Path, server: str) -> str:
    return f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    {server}
}}
"""


def _wait_http(url: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, headers=headers, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 200 within {START_TIMEOUT_S:.0f} s")


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


async def _publish_apps(bootstrap: str, topic: str, app_id: str, tenant_id: str) -> None:
    """The load app, then 100,000 others, as app states on the bench's own topic."""
    await ensure_topics(
        bootstrap, [TopicSpec(topic, partitions=6, configs={})], security=kafka_security()
    )
    producer = make_producer(bootstrap, f"bench-apps-{uuid.uuid4().hex[:8]}", kafka_security())
    await producer.start()
    try:
        now = datetime.now(UTC)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        ids = [app_id] + [f"bench-app-{n:06d}" for n in range(APPS_IN_VIEW)]
        for index, one in enumerate(ids):
            state = AppState(
                app_id=one,
                tenant_id=tenant_id,
                enabled=True,
                permissions=["Alert.Read.All"],
                rate_limit=RateLimit(per_minute=100_000_000, per_hour=1_000_000_000),
                tokens_valid_after=epoch,
                version=1,
                updated_at=now,
            )
            record = encode_app_state(state, "//capps/bench")
            await producer.send(topic, key=record.key, value=record.value, headers=record.headers)
            if index % 20_000 == 0:
                await producer.flush()
        await producer.flush()
    finally:
        await producer.stop()


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = make_admin(bootstrap, "capps-gateway-bench", kafka_security())
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _limiter_cost(redis_url: str, seconds: float = 3.0) -> dict[str, float]:
    """Checks per second and CPU µs per check of 50 concurrent callers through one limiter."""
    import redis.asyncio as redis

    from capps_gateway.ratelimit import RateLimiter

    limiter = RateLimiter(redis.Redis.from_url(redis_url), fallback_share=1)
    limit = RateLimit(per_minute=1_000_000_000, per_hour=1_000_000_000)
    app_id = f"bench-rl-{uuid.uuid4().hex[:8]}"
    checks = 0
    stop_at = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal checks
        while time.monotonic() < stop_at:
            await limiter.check(app_id, limit)
            checks += 1

    cpu_before, wall_before = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(50)))
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    await limiter.close()
    return {"checks_per_second": checks / wall, "cpu_us_per_check": cpu / checks * 1e6}


Target = tuple[str, str, dict[str, str], "subprocess.Popen[str] | None"]


def _rounds(
    targets: list[Target],
    gateway: "subprocess.Popen[bytes]",
    *,
    seconds: int,
    rounds: int,
    connections: int,
    results: dict[str, list[LoadResult]],
    cpu: dict[str, list[float]],
) -> None:
    """wrk at each target per round, the order rotating; CPU time of the serving process."""
    for number in range(rounds):
        for key, url, headers, nginx in targets[number % 2 :] + targets[: number % 2]:
            pids = _children(nginx.pid) if nginx is not None else [gateway.pid]
            profiler = _profiler(gateway.pid, seconds) if nginx is None and number == 0 else None
            before = _cpu_seconds(pids)
            with ticking(f"round {number + 1}/{rounds}: {key}", expected_s=seconds):
                result = run_wrk(url, seconds, connections, headers)
            used = _cpu_seconds(pids) - before
            if profiler is not None:
                profiler.wait(60)
            results[key].append(result)
            cpu[key].append(used / max(result.requests, 1) * 1e6)
            say(
                f"{result.ok_per_second:,.0f} req/s, p99 {result.p99_ms:.1f} ms, "
                f"{cpu[key][-1]:.0f} CPU µs/call, {result.non_2xx} non-2xx"
            )


PROFILE_OUT = ROOT / "bench" / "results" / "gateway-profile.txt"


def _profiler(pid: int, seconds: int) -> "subprocess.Popen[bytes] | None":
    """With BENCH_PROFILE=1: py-spy (from PyPI, through uvx) samples the gateway for a round,
    writing collapsed stacks to bench/results/gateway-profile.txt; what the README's profile
    section is read from. Sampling costs the gateway a little: that round's figures are lower."""
    if os.environ.get("BENCH_PROFILE") != "1":
        return None
    command = ["uvx", "py-spy", "record", "--nonblocking", "-r", "250", "-f", "raw"]
    command += ["-d", str(seconds), "-p", str(pid), "-o", str(PROFILE_OUT)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure_edge(
    *, seconds: int, rounds: int, connections: int, registry: str, token: str, workdir: Path
) -> EdgeRun:
    """Run the three side by side; see the module docstring."""
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    claims = _claims(token)
    topic = f"capps.apps.v1.bench-{uuid.uuid4().hex[:8]}"
    with ticking(f"publishing {APPS_IN_VIEW:,} app states to {topic}"):
        asyncio.run(_publish_apps(bootstrap, topic, claims["client_id"], claims["tid"]))
    static_dir, proxy_dir = workdir / "static", workdir / "proxy"
    static_dir.mkdir(parents=True, exist_ok=True)
    (static_dir / "alerts.json").write_bytes(static_body())
    static_port, proxy_port = spare_port(), spare_port()
    gateway_port, admin_port = spare_port(), spare_port()
    static_server = (
        f"server {{ listen 127.0.0.1:{static_port}; default_type application/json;"
        f" location = {PATH} {{ alias {static_dir}/alerts.json; }} }}"
    )
    proxy_server = (
        f"upstream static {{ server 127.0.0.1:{static_port}; keepalive 64; }}"
        f" server {{ listen 127.0.0.1:{proxy_port}; location / {{ proxy_pass http://static;"
        ' proxy_http_version 1.1; proxy_set_header Connection ""; } }'
    )
    env = {
        **os.environ,
        "GATEWAY_WORKERS": "1",
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_ADMIN_PORT": str(admin_port),
        "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{static_port}",
        "GATEWAY_APPS_TOPIC": topic,
        "GATEWAY_SPOOL_DIR": str(workdir / "gateway-spool"),
        "INSTANCE_ID": f"bench-{uuid.uuid4().hex[:6]}",
        "REGISTRY_URL": registry,
        "TOKEN_ISSUER": claims["iss"],
        "LOG_LEVEL": "WARNING",
    }
    results: dict[str, list[LoadResult]] = {"static_nginx_proxy": [], "static_gateway": []}
    cpu: dict[str, list[float]] = {"static_nginx_proxy": [], "static_gateway": []}
    log = (workdir / "gateway.log").open("wb")
    try:
        with (
            _nginx(_nginx_config(static_dir, static_server), static_dir),
            _nginx(_nginx_config(proxy_dir, proxy_server), proxy_dir) as proxy,
        ):
            gateway = subprocess.Popen(
                [sys.executable, "-m", "capps_gateway"], env=env, stdout=log, stderr=log, cwd=ROOT
            )
            try:
                auth = {"Authorization": f"Bearer {token}"}
                with ticking("gateway loading its view of 100,000 apps"):
                    _wait_http(f"http://127.0.0.1:{admin_port}/readyz")
                    _wait_http(f"http://127.0.0.1:{gateway_port}{PATH}", auth)
                    _wait_http(f"http://127.0.0.1:{proxy_port}{PATH}")
                rss = _rss_mb(gateway.pid)
                say(f"gateway RSS with {APPS_IN_VIEW:,} apps in view: {rss:.0f} MB")
                targets = [
                    ("static_nginx_proxy", f"http://127.0.0.1:{proxy_port}{PATH}", {}, proxy),
                    ("static_gateway", f"http://127.0.0.1:{gateway_port}{PATH}", auth, None),
                ]
                _rounds(
                    targets,
                    gateway,
                    seconds=seconds,
                    rounds=rounds,
                    connections=connections,
                    results=results,
                    cpu=cpu,
                )
                rss = max(rss, _rss_mb(gateway.pid))
            finally:
                gateway.send_signal(signal.SIGTERM)
                try:
                    gateway.wait(30)
                except subprocess.TimeoutExpired:
                    gateway.kill()
    finally:
        log.close()
        asyncio.run(_delete_topic(bootstrap, topic))
    with ticking("rate limiter: 50 concurrent callers, 3 s"):
        limiter = asyncio.run(_limiter_cost(os.environ["REDIS_URL"]))
    return EdgeRun(
        rounds=results,
        cpu_us_per_call={key: sorted(values)[len(values) // 2] for key, values in cpu.items()},
        gateway_rss_mb=rss,
        limiter=limiter,
        profile=summarise_profile(PROFILE_OUT)
        if os.environ.get("BENCH_PROFILE") == "1" and PROFILE_OUT.exists()
        else {},
    )


PROFILE_PARTS = (
    ("aiohttp client", ("aiohttp/", "yarl/", "multidict/")),
    ("uvicorn + httptools serving", ("uvicorn/", "httptools/", "h11/")),
    (
        "event build, journal, Kafka",
        (
            "capps_gateway/events.py",
            "capps_gateway/journal.py",
            "capps_gateway/spool.py",
            "capps_events/",
            "aiokafka/",
            "msgspec",
            "uuid_utils",
        ),
    ),
    ("rate limit + Redis client", ("capps_gateway/ratelimit.py", "redis/")),
    ("token checks", ("capps_gateway/auth/", "joserfc/")),
    (
        "gateway's own code (routing, headers, app view, metrics)",
        ("capps_gateway/", "prometheus_client/"),
    ),
    ("asyncio / uvloop", ("asyncio/", "uvloop/")),
)


def summarise_profile(path: Path) -> dict[str, float]:
    """Share of samples per part: the innermost frame of a known part names the sample's."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        part = "other (interpreter, stdlib, idle)"
        for frame in reversed(stack.split(";")):
            found = [name for name, marks in PROFILE_PARTS if any(m in frame for m in marks)]
            if found:
                part = found[0]
                break
        counts[part] = counts.get(part, 0) + int(count)
        total += int(count)
    return {part: count / total for part, count in sorted(counts.items(), key=lambda i: -i[1])}
