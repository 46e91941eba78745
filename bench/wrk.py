"""Run wrk, a load generator outside our Python processes, and parse what it prints."""

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

_LATENCY = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        """Completed requests per second, whatever their status."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_per_second(self) -> float:
        """Answered 2xx/3xx per second: an error page served fast is not throughput."""
        return max(self.requests - self.non_2xx, 0) / self.seconds if self.seconds else 0.0


def parse_wrk(output: str) -> LoadResult:
    """Parse `wrk --latency` output."""
    latency = {pct: float(value) * _UNIT_MS[unit] for pct, value, unit in _LATENCY.findall(output)}
    total = _TOTAL.search(output)
    if total is None or len(latency) < 3:
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    errors = _ERRORS.search(output)
    return LoadResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNIT_MS[total.group(3)] / 1000.0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        p50_ms=latency["50"],
        p90_ms=latency["90"],
        p99_ms=latency["99"],
    )


def wrk_path() -> str:
    """The wrk binary; installs Debian's package when it is missing and we may."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing Debian's package (apt-get install wrk)...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed; run `apt-get install wrk`")
    return found


def wrk_version() -> str:
    """The first line `wrk -v` prints, for the run's machine facts."""
    # wrk prints its version with the usage text and exits 1.
    done = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout + done.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def pacing_script(rate: float, connections: int) -> str:
    """A wrk Lua script that paces each connection so all together call about `rate` per s.

    wrk's `delay()` holds a connection this many milliseconds (whole ones) before its next
    request. The holds are drawn at random, exponentially distributed around the mean that
    gives `rate`: with many connections the calls then arrive like independent callers'
    (about Poisson), never in step. A fixed hold keeps the connections in step once a slow
    answer has bunched them, and makes a slower target be called less often (the next call
    waits for the answer): measured at 2,200 calls/s asked with 32 connections, the gateway
    got 1,409-1,674 calls/s while nginx got 1,930. Long holds (many connections) keep that
    shortfall small for every target, fast or slow.
    """
    mean_ms = connections * 1000 / rate
    return (
        "math.randomseed(os.time())\n"
        "function delay()\n"
        f"  return math.floor(-math.log(1 - math.random()) * {mean_ms:.3f} + 0.5)\n"
        "end\n"
    )


def run_wrk(
    url: str,
    seconds: int,
    connections: int,
    headers: dict[str, str] | None = None,
    *,
    rate: float | None = None,
) -> LoadResult:
    """Load `url` for `seconds` with `connections` keep-alive connections on one thread;
    with `rate`, paced to about that many calls per second instead of as fast as it answers."""
    command = [wrk_path(), "--latency", "-t1", f"-c{connections}", f"-d{seconds}s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if rate is not None:
            script.write(pacing_script(rate, connections))
            script.flush()
            command += ["-s", script.name]
        done = subprocess.run(
            [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
        )
    return parse_wrk(done.stdout)
