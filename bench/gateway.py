"""`--only edge`: one gateway process against one nginx worker, same fast static upstream.

Side by side in the same run, rounds interleaved: a static 7.6 KB JSON served by its own nginx
(the upstream), an nginx worker proxying to it (reference), and one gateway process proxying to
it with every per-call step on (token cache hit, app view with 100,000 apps, rate limit through
Redis, journal, event to Kafka). Besides req/s and p50/p99 (wrk, 32 connections): CPU µs per
call of the proxy process (its /proc utime+stime over the run / calls), the gateway's RSS with
100,000 apps in its view, and the rate limiter's cost per check (50 concurrent callers, in
this process, against the stack's Redis). The gateway reads a bench-owned apps topic and writes
its events to a bench-owned topic, both removed afterwards, so the stack's topics, aggregator
and usage figures are untouched.

In the same rounds, bench/edge_apps.py's stripped-down apps (served alone on the gateway's
edge, on uvicorn and on granian, relaying through the gateway's upstream client and through
aiohttp) split a call's cost by stage. Every target's run-queue wait (schedstat: runnable,
no CPU free) shows how much the shared machine held it back. Then the paced point: the
gateway at half its measured peak beside the upstream called directly at the same pace, p99
of each and the difference; and nginx at half of its own peak, the same relative load, with
the upstream called directly at that pace.

The gateway runs its compiled modules (services/gateway/native.py) when they are built; a
second gateway process runs the same sources interpreted (a copy without the extensions, first
on its PYTHONPATH) in the same rounds, the measurement behind compiling them.
"""

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import requests

from bench.machine import ROOT
from bench.nginx import nginx_path, spare_port
from bench.progress import say, ticking
from bench.wrk import LoadResult, run_wrk
from capps_events import REQUESTS_TOPIC, AppState, RateLimit, TopicSpec, encode_app_state
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
    runqueue_share: dict[str, float]
    """Per target, the share of its rounds' wall time its threads spent runnable but waiting
    for a CPU (from /proc schedstat): how much the shared machine held it back."""
    gateway_rss_mb: float
    limiter: dict[str, float]
    profile: dict[str, float]
    half_rate: dict[str, float]
    gateway_compiled: bool
    """Whether the measured gateway ran its compiled modules (services/gateway/native.py)."""


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


def _tree(pid: int) -> list[int]:
    """The process and all its descendants (granian serves from a child process)."""
    found = [pid]
    for child in _children(pid):
        found += _tree(child)
    return found


def _waited_s(pids: list[int]) -> float:
    """Seconds the processes' threads spent runnable, waiting for a CPU (schedstat field 2)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


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
        _stop(process, signal.SIGQUIT)  # nginx's graceful stop


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


@contextlib.contextmanager
def _bench_topics(bootstrap: str, claims: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The bench's own apps topic (with the load app and 100,000 others) and events topic.

    The gateway's events go to a topic of the bench's own: the stack's aggregator does not
    count them (nor compete for the CPU while the gateway is measured, which nginx's rounds
    never have to), and the stack's usage figures stay the stack's.
    """
    suffix = uuid.uuid4().hex[:8]
    topic, events_topic = f"capps.apps.v1.bench-{suffix}", f"{REQUESTS_TOPIC}.bench-{suffix}"
    try:
        with ticking(f"publishing {APPS_IN_VIEW:,} app states to {topic}"):
            asyncio.run(_publish_apps(bootstrap, topic, claims["client_id"], claims["tid"]))
            asyncio.run(
                ensure_topics(
                    bootstrap,
                    [TopicSpec(events_topic, partitions=6, configs={})],
                    security=kafka_security(),
                )
            )
        yield topic, events_topic
    finally:
        for name in (topic, events_topic):
            asyncio.run(_delete_topic(bootstrap, name))


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = make_admin(bootstrap, "capps-gateway-bench", kafka_security())
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _limiter_run(
    redis_url: str, callers: int, seconds: float, *, lease_max: int
) -> tuple[int, int, int, float, float]:
    """(checks, of them served from a lease, Redis round trips, CPU s, wall s) of `callers`
    checking one app as fast as answered, its limit out of reach."""
    from capps_gateway import metrics
    from capps_gateway.ratelimit import RateLimiter
    from capps_kit.redis import create_redis

    limiter = RateLimiter(
        create_redis(redis_url, timeout_s=0.25), fallback_share=1, lease_max=lease_max
    )
    limit = RateLimit(per_minute=1_000_000_000, per_hour=1_000_000_000)
    app_id = f"bench-rl-{uuid.uuid4().hex[:8]}"
    checks = 0
    stop_at = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal checks
        while time.monotonic() < stop_at:
            await limiter.check(app_id, limit)
            checks += 1

    leased = metrics.RATELIMIT_CHECKS.labels("lease")
    leased_before = leased._value.get()
    trips_before = metrics.RATELIMIT_ROUND_TRIPS._value.get()
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    trips = int(metrics.RATELIMIT_ROUND_TRIPS._value.get() - trips_before)
    from_leases = int(leased._value.get() - leased_before)
    await limiter.close()
    return checks, from_leases, trips, cpu, wall


async def _limiter_cost(redis_url: str, seconds: float = 2.0) -> dict[str, float]:
    """Checks/s, CPU µs per check and per Redis round trip, and the share of checks served from
    the process's lease, through one limiter in this process with 1, 8 and 50 concurrent
    callers of one hot app; each also with leases off (`_no_leases`, as before them) in the
    same run. Without leases a check costs its share of a batched round trip; with them,
    nearly nothing when the lease serves it."""
    from capps_gateway.ratelimit_leases import PREFETCH_MAX

    found: dict[str, float] = {}
    for callers in (1, 8, 50):
        for lease_max, leases in ((0, "_no_leases"), (PREFETCH_MAX, "")):
            checks, from_leases, trips, cpu, wall = await _limiter_run(
                redis_url, callers, seconds, lease_max=lease_max
            )
            suffix = ("" if callers == 50 else f"_{callers}_callers") + leases
            found[f"checks_per_second{suffix}"] = checks / wall
            found[f"cpu_us_per_check{suffix}"] = cpu / max(checks, 1) * 1e6
            found[f"cpu_us_per_round_trip{suffix}"] = cpu / max(trips, 1) * 1e6
            found[f"lease_share{suffix}"] = from_leases / max(checks, 1)
    return found


def _samples(metrics_url: str) -> dict[str, float]:
    """The gateway's metric samples, named with their labels as /metrics prints them."""
    found: dict[str, float] = {}
    for line in requests.get(metrics_url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _checks_by_source(samples: dict[str, float]) -> dict[str, float]:
    """The gateway's rate-limit checks so far by who decided them (lease, redis, local)."""
    prefix = 'capps_gateway_ratelimit_checks_total{source="'
    return {
        name.removeprefix(prefix).removesuffix('"}'): value
        for name, value in samples.items()
        if name.startswith(prefix)
    }


@dataclass(frozen=True, slots=True)
class Target:
    """One thing wrk loads: where, with which headers, and which processes serve it."""

    key: str
    url: str
    headers: dict[str, str]
    pids: Callable[[], list[int]]


def _rounds(
    targets: list[Target],
    *,
    seconds: int,
    rounds: int,
    connections: int,
    profile_pid: int,
    results: dict[str, list[LoadResult]],
    cpu: dict[str, list[float]],
    waited: dict[str, list[float]],
) -> None:
    """wrk at each target per round, the order rotating; CPU and run-queue time of its server."""
    for number in range(rounds):
        shift = number % len(targets)
        for target in targets[shift:] + targets[:shift]:
            pids = target.pids()
            profiled = target.key == "static_gateway" and number == 0
            profiler = _profiler(profile_pid, seconds) if profiled else None
            before, waited_before = _cpu_seconds(pids), _waited_s(pids)
            with ticking(f"round {number + 1}/{rounds}: {target.key}", expected_s=seconds):
                result = run_wrk(target.url, seconds, connections, target.headers)
            used = _cpu_seconds(pids) - before
            waited[target.key].append((_waited_s(pids) - waited_before) / result.seconds)
            if profiler is not None:
                profiler.wait(60)
            results[target.key].append(result)
            cpu[target.key].append(used / max(result.requests, 1) * 1e6)
            say(
                f"{result.ok_per_second:,.0f} req/s, p99 {result.p99_ms:.1f} ms, "
                f"{cpu[target.key][-1]:.0f} CPU µs/call, run-queue wait"
                f" {waited[target.key][-1]:.0%} of wall, {result.non_2xx} non-2xx"
            )


HALF_RATE_CONNECTIONS = 128
"""Many connections with long random holds between calls (bench/wrk.py's pacing): the calls
arrive like independent callers', and a target that answers slowly is still asked nearly the
whole rate (32 connections gave the gateway 15-27% fewer calls than nginx)."""


def _half_rate(
    targets: list[Target], *, rate: float, seconds: int, rounds: int
) -> tuple[dict[str, list[LoadResult]], dict[str, float]]:
    """The upstream direct, the nginx proxy, the CPU-matched control and the gateway, all
    paced at `rate` calls/s, rounds interleaved and rotated; their p99s and CPU µs per call.

    The nginx proxy is the reference for what one more hop costs at the tail on this machine:
    every hop waits for a scheduler turn of its process. The control (bench/cpu_control.py)
    costs as much CPU per call as the gateway and does nothing else: its p99 is what that cost
    alone gets on this machine now.
    """
    found: dict[str, list[LoadResult]] = {target.key: [] for target in targets}
    cpu: dict[str, list[float]] = {target.key: [] for target in targets}
    for number in range(rounds):
        shift = number % len(targets)
        for target in targets[shift:] + targets[:shift]:
            pids = target.pids()
            before = _cpu_seconds(pids)
            with ticking(
                f"half rate {number + 1}/{rounds}: {target.key}, {rate:,.0f} calls/s",
                expected_s=seconds,
            ):
                result = run_wrk(
                    target.url, seconds, HALF_RATE_CONNECTIONS, target.headers, rate=rate
                )
            found[target.key].append(result)
            cpu[target.key].append((_cpu_seconds(pids) - before) / max(result.requests, 1) * 1e6)
            say(
                f"{result.per_second:,.0f} req/s, p50 {result.p50_ms:.2f} ms,"
                f" p99 {result.p99_ms:.2f} ms"
                + (f", {cpu[target.key][-1]:.0f} CPU µs/call" if pids else "")
            )
    return found, {key: statistics.median(values) for key, values in cpu.items() if values}


def _half_rate_figures(
    paced: dict[str, list[LoadResult]], rate: float, cpu_us: dict[str, float], work_us: float
) -> dict[str, float]:
    """Median p99s of the paced runs, and what each adds to the direct one."""
    p99 = {key: statistics.median(r.p99_ms for r in runs) for key, runs in paced.items()}
    direct = p99["static_direct_half"]
    return {
        "calls_per_second": rate,
        "connections": HALF_RATE_CONNECTIONS,
        "direct_p99_ms": direct,
        "gateway_p99_ms": p99["static_gateway_half"],
        "added_p99_ms": p99["static_gateway_half"] - direct,
        "nginx_p99_ms": p99["static_nginx_half"],
        "nginx_added_p99_ms": p99["static_nginx_half"] - direct,
        "control_p99_ms": p99["static_control_half"],
        "control_added_p99_ms": p99["static_control_half"] - direct,
        "control_work_us": work_us,
        "gateway_cpu_us_per_call": cpu_us.get("static_gateway_half", 0.0),
        "control_cpu_us_per_call": cpu_us.get("static_control_half", 0.0),
    }


def _own_half_figures(paced: dict[str, list[LoadResult]], rate: float) -> dict[str, float]:
    """nginx at half of its own peak: its p99 and what it adds to the direct one at that pace."""
    p99 = {key: statistics.median(r.p99_ms for r in runs) for key, runs in paced.items()}
    direct = p99["static_direct_nginx_half"]
    return {
        "nginx_own_calls_per_second": rate,
        "nginx_own_direct_p99_ms": direct,
        "nginx_own_p99_ms": p99["static_nginx_own_half"],
        "nginx_own_added_p99_ms": p99["static_nginx_own_half"] - direct,
    }


@contextlib.contextmanager
def _cpu_control(upstream: str, work_us: float, log: IO[bytes]) -> Iterator[Target]:
    """bench/cpu_control.py on a spare port: the relay plus `work_us` µs of work per call."""
    port = spare_port()
    command = [sys.executable, "-m", "bench.cpu_control", str(port), upstream, f"{work_us:.0f}"]
    process = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}{PATH}"
        _wait_http(url)
        yield Target("static_control_half", url, {}, lambda: [process.pid])
    finally:
        _stop(process)


def _paced_point(
    full_speed: dict[str, list[LoadResult]],
    cpu: dict[str, list[float]],
    *,
    upstream: str,
    nginx: Target,
    gateway: Target,
    seconds: int,
    rounds: int,
    log: IO[bytes],
) -> tuple[dict[str, list[LoadResult]], dict[str, float]]:
    """Half the gateway's peak; beside it the upstream called directly, the nginx proxy and a
    control costing the gateway's CPU per call (its own work beyond the relay's). Then nginx at
    half of its own peak beside the upstream direct at that pace: the same relative load as
    the gateway's, the tail this machine gives a mature proxy there."""
    rate = statistics.median(r.ok_per_second for r in full_speed["static_gateway"]) / 2
    own_us = statistics.median(cpu["static_gateway"]) - statistics.median(cpu["static_relay"])
    work_us = max(own_us, 0.0)
    with _cpu_control(upstream, work_us, log) as control:
        paced, paced_cpu = _half_rate(
            [
                Target("static_direct_half", f"{upstream}{PATH}", {}, list),
                replace(nginx, key="static_nginx_half"),
                control,
                replace(gateway, key="static_gateway_half"),
            ],
            rate=rate,
            seconds=seconds,
            rounds=rounds,
        )
    nginx_rate = statistics.median(r.ok_per_second for r in full_speed[nginx.key]) / 2
    own, _ = _half_rate(
        [
            Target("static_direct_nginx_half", f"{upstream}{PATH}", {}, list),
            replace(nginx, key="static_nginx_own_half"),
        ],
        rate=nginx_rate,
        seconds=seconds,
        rounds=rounds,
    )
    figures = _half_rate_figures(paced, rate, paced_cpu, work_us) | _own_half_figures(
        own, nginx_rate
    )
    return paced | own, figures


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
    cleanup = contextlib.ExitStack()
    topic, events_topic = cleanup.enter_context(_bench_topics(bootstrap, claims))
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
        "GATEWAY_EVENTS_TOPIC": events_topic,
        "GATEWAY_SPOOL_DIR": str(workdir / "gateway-spool"),
        "INSTANCE_ID": f"bench-{uuid.uuid4().hex[:6]}",
        "REGISTRY_URL": registry,
        "TOKEN_ISSUER": claims["iss"],
        "LOG_LEVEL": "WARNING",
    }
    keys = ["static_nginx_proxy", "static_gateway", INTERPRETED, *STAGE_APPS.values()]
    results: dict[str, list[LoadResult]] = {key: [] for key in keys}
    cpu: dict[str, list[float]] = {key: [] for key in keys}
    waited: dict[str, list[float]] = {key: [] for key in keys}
    log = (workdir / "gateway.log").open("wb")
    try:
        with (
            _nginx(_nginx_config(static_dir, static_server), static_dir),
            _nginx(_nginx_config(proxy_dir, proxy_server), proxy_dir) as proxy,
            contextlib.ExitStack() as stages,
        ):
            gateway = subprocess.Popen(
                [sys.executable, "-m", "capps_gateway"], env=env, stdout=log, stderr=log, cwd=ROOT
            )
            stages.callback(_stop, gateway)
            upstream = f"http://127.0.0.1:{static_port}"
            auth = {"Authorization": f"Bearer {token}"}
            interpreted = stages.enter_context(_interpreted_gateway(env, workdir, auth, log))
            stage_targets = [
                stages.enter_context(_stage_app(variant, key, upstream, static_dir, log))
                for variant, key in STAGE_APPS.items()
            ]
            with ticking("gateways loading their view of 100,000 apps; stage apps starting"):
                _wait_http(f"http://127.0.0.1:{admin_port}/readyz")
                _wait_http(f"http://127.0.0.1:{gateway_port}{PATH}", auth)
                _wait_http(f"http://127.0.0.1:{proxy_port}{PATH}")
                for target in [interpreted, *stage_targets]:
                    _wait_http(target.url, target.headers)
            rss = _rss_mb(gateway.pid)
            say(f"gateway RSS with {APPS_IN_VIEW:,} apps in view: {rss:.0f} MB")
            through_gateway = Target(
                "static_gateway",
                f"http://127.0.0.1:{gateway_port}{PATH}",
                auth,
                lambda: [gateway.pid],
            )
            through_nginx = Target(
                "static_nginx_proxy",
                f"http://127.0.0.1:{proxy_port}{PATH}",
                {},
                lambda: _children(proxy.pid),
            )
            targets = [
                through_nginx,
                through_gateway,
                interpreted,
                *stage_targets,
            ]
            _rounds(
                targets,
                seconds=seconds,
                rounds=rounds,
                connections=connections,
                profile_pid=gateway.pid,
                results=results,
                cpu=cpu,
                waited=waited,
            )
            rss = max(rss, _rss_mb(gateway.pid))
            paced, half_rate = _paced_point(
                results,
                cpu,
                upstream=upstream,
                nginx=through_nginx,
                gateway=through_gateway,
                seconds=seconds,
                rounds=rounds,
                log=log,
            )
            results |= paced
            samples = _samples(f"http://127.0.0.1:{admin_port}/metrics")
            served_by = _checks_by_source(samples)
    finally:
        log.close()
        cleanup.close()
    with ticking("rate limiter: 1, 8 and 50 concurrent callers, without and with leases, 2 s each"):
        limiter = asyncio.run(_limiter_cost(os.environ["REDIS_URL"]))
    limiter["gateway_lease_share"] = served_by.get("lease", 0) / max(sum(served_by.values()), 1)
    return EdgeRun(
        rounds=results,
        cpu_us_per_call={key: statistics.median(values) for key, values in cpu.items()},
        runqueue_share={key: statistics.median(values) for key, values in waited.items()},
        gateway_rss_mb=rss,
        limiter=limiter,
        profile=summarise_profile(PROFILE_OUT)
        if os.environ.get("BENCH_PROFILE") == "1" and PROFILE_OUT.exists()
        else {},
        half_rate=half_rate,
        gateway_compiled=samples.get("capps_gateway_compiled") == 1.0,
    )


GATEWAY_SOURCE = ROOT / "services" / "gateway" / "src"
INTERPRETED = "static_gateway_interpreted"


@contextlib.contextmanager
def _interpreted_gateway(
    env: dict[str, str], workdir: Path, auth: dict[str, str], log: IO[bytes]
) -> Iterator[Target]:
    """A second gateway process of the same sources, interpreted: a copy of the package
    without its compiled modules, first on PYTHONPATH; its own ports, spool and instance."""
    copy = workdir / "interpreted"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(
        GATEWAY_SOURCE / "capps_gateway",
        copy / "capps_gateway",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    port, admin_port = spare_port(), spare_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "capps_gateway"],
        env=env
        | {
            "PYTHONPATH": str(copy),
            "GATEWAY_PORT": str(port),
            "GATEWAY_ADMIN_PORT": str(admin_port),
            "GATEWAY_SPOOL_DIR": str(workdir / "gateway-spool-interpreted"),
            "INSTANCE_ID": f"bench-{uuid.uuid4().hex[:6]}",
        },
        stdout=log,
        stderr=log,
        cwd=ROOT,
    )
    try:
        yield Target(INTERPRETED, f"http://127.0.0.1:{port}{PATH}", auth, lambda: [process.pid])
    finally:
        _stop(process)


STAGE_APPS = {
    "serve": "static_serve",
    "serve-uvicorn": "static_serve_uvicorn",
    "serve-granian": "static_serve_granian",
    "relay": "static_relay",
    "relay-aiohttp": "static_relay_aiohttp",
}
"""bench/edge_apps.py's variants and their scenario keys."""


@contextlib.contextmanager
def _stage_app(
    variant: str, key: str, upstream: str, static_dir: Path, log: IO[bytes]
) -> Iterator[Target]:
    """One of bench/edge_apps.py's stripped-down apps, served on a spare port."""
    port = spare_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.edge_apps", variant, str(port), upstream),
            str(static_dir / "alerts.json"),
        ],
        stdout=log,
        stderr=log,
        cwd=ROOT,
    )
    try:
        yield Target(key, f"http://127.0.0.1:{port}{PATH}", {}, lambda: _tree(process.pid))
    finally:
        _stop(process)


def _stop(
    process: "subprocess.Popen[bytes] | subprocess.Popen[str]", sig: int = signal.SIGTERM
) -> None:
    process.send_signal(sig)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


PROFILE_PARTS = (
    ("aiohttp client", ("aiohttp/", "yarl/", "multidict/")),
    ("HTTP edge + httptools serving", ("capps_gateway/edge.py", "httptools/")),
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
    ("rate limit + Redis client", ("capps_gateway/ratelimit", "redis/")),
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


def stage_costs(cpu_us: dict[str, float]) -> dict[str, float]:
    """CPU µs per call of each stage, by difference of the stage apps measured in one run."""
    found: dict[str, float] = {}
    serve = cpu_us.get("static_serve")
    relay = cpu_us.get("static_relay")
    gateway = cpu_us.get("static_gateway")
    if serve is not None:
        found["serving (the gateway's edge)"] = serve
    if "static_serve_uvicorn" in cpu_us:
        found["serving on uvicorn instead (ASGI)"] = cpu_us["static_serve_uvicorn"]
    if serve is not None and relay is not None:
        found["upstream client"] = relay - serve
        if "static_relay_aiohttp" in cpu_us:
            found["upstream client, aiohttp instead"] = cpu_us["static_relay_aiohttp"] - serve
    if relay is not None and gateway is not None:
        found["gateway's own work (token, app, limit, event, metrics)"] = gateway - relay
    if "static_serve_granian" in cpu_us:
        found["serving on granian instead (all its threads)"] = cpu_us["static_serve_granian"]
    return found


def print_edge(edge: dict[str, Any]) -> None:
    """The edge group's figures besides the table."""
    cpu = edge["cpu_us_per_call"]
    waited = edge.get("runqueue_wait_share", {})
    print("\nedge: CPU µs per call (run-queue wait: share of wall time waiting for a CPU)")
    for key, value in cpu.items():
        wait = f"  run-queue wait {waited[key]:.0%}" if key in waited else ""
        print(f"  {key:<28} {value:>7.1f}{wait}")
    if "gateway_compiled" in edge:
        built = "compiled (native.py)" if edge["gateway_compiled"] else "interpreted"
        print(f"edge: the gateway ran {built}; static_gateway_interpreted: the same, interpreted")
    stages = stage_costs(cpu)
    if stages:
        print("edge: where a gateway call's CPU goes (differences of the stage apps)")
        for stage, value in stages.items():
            print(f"  {stage:<58} {value:>7.1f} µs")
    limiter = edge["ratelimiter"]
    print(f"edge: gateway RSS with 100,000 apps {edge['gateway_rss_mb_100k_apps']:.0f} MB")
    for suffix, callers in (
        ("_1_callers_no_leases", "1 caller, leases off"),
        ("_8_callers_no_leases", "8 callers, leases off"),
        ("_no_leases", "50 callers, leases off"),
        ("_1_callers", "1 caller"),
        ("_8_callers", "8 callers"),
        ("", "50 callers"),
    ):
        if f"cpu_us_per_round_trip{suffix}" in limiter:
            rate = limiter[f"checks_per_second{suffix}"]
            per_check = limiter[f"cpu_us_per_check{suffix}"]
            per_trip = limiter[f"cpu_us_per_round_trip{suffix}"]
            leased = limiter.get(f"lease_share{suffix}")
            served = "" if leased is None else f", {leased:.1%} served from the lease"
            print(
                f"edge: rate limiter, {callers}: {rate:,.0f} checks/s,"
                f" {per_check:.1f} CPU µs per check, {per_trip:.0f} per Redis round trip{served}"
            )
    if "gateway_lease_share" in limiter:
        print(
            f"edge: the gateway's rate-limit checks served from its lease:"
            f" {limiter['gateway_lease_share']:.1%}"
        )
    half = edge.get("half_rate")
    if half:
        print(
            f"edge: at half the gateway's peak ({half['calls_per_second']:,.0f} calls/s paced)"
            f" p99 direct {half['direct_p99_ms']:.2f} ms, through the gateway"
            f" {half['gateway_p99_ms']:.2f} ms: {half['added_p99_ms']:+.2f} ms added"
        )
        if "nginx_p99_ms" in half:
            print(
                f"edge: the nginx proxy at the same pace: p99 {half['nginx_p99_ms']:.2f} ms,"
                f" {half['nginx_added_p99_ms']:+.2f} ms added (one more hop on this machine)"
            )
        if "control_p99_ms" in half:
            print(
                f"edge: a relay spending the gateway's CPU per call at the same pace"
                f" ({half['control_cpu_us_per_call']:.0f} vs the gateway's"
                f" {half['gateway_cpu_us_per_call']:.0f} µs): p99 {half['control_p99_ms']:.2f} ms,"
                f" {half['control_added_p99_ms']:+.2f} ms added (that cost alone, on this machine)"
            )
        if "nginx_own_p99_ms" in half:
            print(
                f"edge: nginx at half of its own peak ({half['nginx_own_calls_per_second']:,.0f}"
                f" calls/s, the gateway's relative load): p99 {half['nginx_own_p99_ms']:.2f} ms,"
                f" {half['nginx_own_added_p99_ms']:+.2f} ms added to the upstream direct at"
                f" that pace ({half['nginx_own_direct_p99_ms']:.2f} ms)"
            )
