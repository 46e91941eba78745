"""Process and I/O helpers: run commands, find live processes by pid and start time, probe ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from .config import HOST

LOG_TAIL_LINES = 25


def parse_pidfile(text: str) -> tuple[int, str] | None:
    """`pid start-time` as written by write_pidfile, or None when unreadable."""
    fields = text.split()
    if len(fields) != 2 or not fields[0].isdigit():
        return None
    return int(fields[0]), fields[1]


def start_time_from_stat(stat: str) -> str | None:
    """Process start time (clock ticks since boot) from /proc/<pid>/stat; None for a zombie.

    The start time tells a live process from an unrelated one that reused its pid.
    """
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    if len(rest) < 20 or rest[0] in {"Z", "X"}:
        return None
    return rest[19]


def say(message: str = "", *, end: str = "\n") -> None:
    """Progress for the person waiting: flushed at once so it shows under make and in CI."""
    sys.stdout.write(message + end)
    sys.stdout.flush()


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    stdin_text: str | None = None,
    log: IO[bytes] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a one-shot command; its output goes to `log` when given, else is captured."""
    output: int | IO[bytes] = log if log is not None else subprocess.PIPE
    return subprocess.run(  # noqa: S603 - argv lists built by this file, never a shell string
        list(argv),
        input=stdin_text.encode() if stdin_text is not None else None,
        stdin=None if stdin_text is not None else subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        timeout=timeout,
        check=False,
    )


def pid_start_time(pid: int) -> str | None:
    """The start time of a live (non-zombie) process, None when there is none."""
    try:
        return start_time_from_stat(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (from /proc: no signal is sent to find them)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 2 and rest[0] not in {"Z", "X"} and rest[2] == str(pgid):
            members.append(int(entry.name))
    return members


def reap_orphans(leader: int, timeout: float = 10.0) -> None:
    """Kill what a dead leader left in its process group (workers, backends) and wait.

    Called only when the leader itself is gone: a pid reused by a new leader stays untouched.
    """
    if pid_start_time(leader) is not None or not group_members(leader):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while group_members(leader) and time.monotonic() < deadline:
        time.sleep(0.1)


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on the port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether GET url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our URLs
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING with PONG (no client library needed)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, indented, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log written)"
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


def is_root() -> bool:
    """Whether this process may install packages and switch users by itself."""
    return os.geteuid() == 0
