"""What every part shares: the run's context and the process lifecycle (start, wait, stop)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

from .config import (
    HOST,
    KAFKA_ADMIN,
    KAFKA_PRINCIPALS,
    Ports,
    StackError,
    env_file_text,
    kafka_password_variable,
    parse_env_file,
)
from .process import is_root, parse_pidfile, pid_start_time, port_open, reap_orphans, run, say, tail

# Secrets the stack generates for the registry, in the order they were introduced.
GENERATED_SECRETS = ("REGISTRY_KEY_ENCRYPTION_KEY", "REGISTRY_SECRET_PEPPER")


@dataclass
class Context:
    """Paths, ports and per-run state shared by every part."""

    repo: Path
    local: Path
    ports: Ports
    timeout: float
    base_env: dict[str, str]
    apt_updated: bool = False
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        """Where pidfiles live."""
        return self.local / "run"

    @property
    def log_dir(self) -> Path:
        """Where logs live."""
        return self.local / "log"

    @property
    def venv_bin(self) -> Path:
        """The uv environment's scripts; services run from it."""
        return self.repo / ".venv" / "bin"

    def rel(self, path: Path) -> str:
        """A path as short as possible for messages."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    def apt_install(self, packages: Sequence[str], why: str) -> None:
        """Install Debian packages (apt-get update first, once per run)."""
        if not shutil.which("apt-get"):
            raise StackError(f"{why}: install {' '.join(packages)} (no apt-get here)")
        prefix: list[str] = []
        if not is_root():
            if not shutil.which("sudo"):
                raise StackError(f"{why}: install {' '.join(packages)} as root")
            prefix = ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        log = self.log_dir / "apt.log"
        with log.open("ab") as out:
            if not self.apt_updated:
                say(f"  apt-get update (log {self.rel(log)})")
                run([*prefix, "apt-get", "update"], env=env, log=out)
                self.apt_updated = True
            say(f"  {why}: apt-get install {' '.join(packages)}")
            cmd = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", *packages]
            if run(cmd, env=env, log=out).returncode != 0:
                raise StackError(f"apt-get install {' '.join(packages)} failed, see {log}")

    def secrets(self) -> dict[str, str]:
        """The registry's secrets: generated on the first run, kept mode 0600, never printed.

        The pepper is made only with a new file: an existing stack's client secrets were
        digested without one, and a pepper added later would make them all stop verifying.
        """
        path = self.local / "secrets.env"
        if not path.exists():
            text = env_file_text({name: secrets.token_urlsafe(32) for name in GENERATED_SECRETS})
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
        path.chmod(0o600)
        found = parse_env_file(path.read_text())
        if not found.get(GENERATED_SECRETS[0]):
            raise StackError(
                f"{path} has no {GENERATED_SECRETS[0]}; delete the file to generate new secrets"
            )
        return {name: found[name] for name in GENERATED_SECRETS if found.get(name)}

    @property
    def kafka_passwords_file(self) -> Path:
        """kafka-passwords.env: the SCRAM passwords of this stack's Kafka principals."""
        return self.local / "kafka-passwords.env"

    def kafka_passwords(self) -> dict[str, str]:
        """Passwords of the admin and of each service's Kafka principal, by variable name.

        Generated with the file (mode 0600, never printed); Kafka storage formatted with
        another admin password is formatted again (kafka.py), so the two always agree.
        """
        path = self.kafka_passwords_file
        names = [kafka_password_variable(p) for p in (KAFKA_ADMIN, *KAFKA_PRINCIPALS)]
        if not path.exists():
            text = env_file_text({name: secrets.token_urlsafe(32) for name in names})
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
        path.chmod(0o600)
        found = parse_env_file(path.read_text())
        missing = [name for name in names if not found.get(name)]
        if missing:
            raise StackError(f"{path} lacks {', '.join(missing)}; delete it to generate new ones")
        return {name: found[name] for name in names}


class Part:
    """One process of the stack: how to tell it runs, start it, wait for it, stop it."""

    name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    stop_timeout: ClassVar[float] = 15.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- what every part defines
    @property
    def port(self) -> int:
        """The port that tells whether something serves this part already."""
        raise NotImplementedError

    @property
    def address(self) -> str:
        """Where clients reach it, for the final summary."""
        return f"{HOST}:{self.port}"

    def healthy(self) -> bool:
        """The full health check `up` waits for."""
        raise NotImplementedError

    def what(self) -> str:
        """What the health check does, for the waiting line."""
        return f"{self.address}"

    def launch(self) -> None:
        """Prepare and spawn the process (without waiting for it)."""
        raise NotImplementedError

    # -- shared machinery
    @property
    def pidfile(self) -> Path:
        """run/<name>.pid: `pid start-time`."""
        return self.ctx.run_dir / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        """log/<name>.log: everything the process and its one-shot commands print."""
        return self.ctx.log_dir / f"{self.name}.log"

    def our_pid(self) -> int | None:
        """The pid of our live process, removing a stale pidfile on the way."""
        try:
            parsed = parse_pidfile(self.pidfile.read_text())
        except FileNotFoundError:
            return None
        if parsed is not None and pid_start_time(parsed[0]) == parsed[1]:
            return parsed[0]
        if parsed is not None:
            # A killed server may leave workers holding its port or shared memory.
            reap_orphans(parsed[0])
        say(f"  {self.name}: stale pidfile {self.ctx.rel(self.pidfile)} removed")
        self.pidfile.unlink(missing_ok=True)
        return None

    def foreign(self) -> bool:
        """Whether something we did not start serves the port."""
        return port_open(self.port)

    def log_header(self, out: IO[bytes], argv: Sequence[str]) -> None:
        """Mark in the log where a new process or command begins."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"\n===== {stamp} stack.py: {shlex.join(argv)}\n".encode())
        out.flush()

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        """Start the long-running process in its own session and record its pidfile."""
        with self.log.open("ab") as out:
            self.log_header(out, argv)
            child = subprocess.Popen(  # noqa: S603 - argv lists built by this file
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd or self.ctx.repo,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                # Its own session: make's Ctrl-C does not reach it, `down` stops the group.
                start_new_session=True,
            )
        started = pid_start_time(child.pid) or "0"
        self.pidfile.write_text(f"{child.pid} {started}\n")
        self.ctx.children[self.name] = child

    def run_logged(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        what: str,
    ) -> None:
        """Run a one-shot command into this part's log; fail with its tail when it fails."""
        with self.log.open("ab") as out:
            self.log_header(out, argv)
            result = run(argv, env=env, cwd=cwd or self.ctx.repo, user=user, log=out)
        if result.returncode != 0:
            raise StackError(
                f"{self.name}: {what} failed (exit {result.returncode}); "
                f"see {self.ctx.rel(self.log)}:\n{tail(self.log)}"
            )

    def died(self) -> bool:
        """Whether the process we started is gone (so waiting longer is pointless)."""
        child = self.ctx.children.get(self.name)
        if child is not None:
            return child.poll() is not None
        return self.pidfile.exists() and self.our_pid() is None

    def ensure(self) -> str:
        """Start the part unless it runs; return how it was found."""
        if self.our_pid() is not None:
            return "running"
        if self.foreign():
            return "external"
        say(f"→ {self.name}: starting (log {self.ctx.rel(self.log)})")
        self.launch()
        return "started"

    def wait(self) -> None:
        """Poll the health check until it passes, the process dies, or the timeout ends."""
        self.wait_for(self.healthy, self.what())

    def wait_for(self, check: Callable[[], bool], what: str) -> None:
        """Wait on one check with a visible line; fail pointing at the log."""
        say(f"  waiting for {self.name}: {what} ", end="")
        started = time.monotonic()
        next_dot = started + 2.0
        while not check():
            now = time.monotonic()
            if self.died():
                say("exited")
                raise StackError(
                    f"{self.name} exited during start-up; see {self.ctx.rel(self.log)}:\n"
                    f"{tail(self.log)}"
                )
            if now - started > self.ctx.timeout:
                say("timed out")
                raise StackError(
                    f"{self.name} not healthy after {self.ctx.timeout:g}s ({what}); "
                    f"see {self.ctx.rel(self.log)}:\n{tail(self.log)}"
                )
            if now >= next_dot:
                say(".", end="")
                next_dot = now + 2.0
            time.sleep(0.3)
        say(f"ok ({time.monotonic() - started:.1f}s)")

    def stop(self) -> None:
        """Stop our process: its signal, a grace period, then SIGKILL to its whole group."""
        pid = self.our_pid()
        if pid is None:
            if self.foreign():
                say(f"  {self.name}: not started by this stack, left alone (port {self.port})")
            else:
                say(f"  {self.name}: not running")
            return
        say(f"  {self.name}: stopping pid {pid} ", end="")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        deadline = time.monotonic() + self.stop_timeout
        while pid_start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        how = "stopped"
        if pid_start_time(pid) is not None:
            how = "killed after timeout"
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Whatever the process left behind in its session (workers, helpers) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        child = self.ctx.children.pop(self.name, None)
        if child is not None:
            child.wait(timeout=5)  # reap our own child so it leaves no zombie
        self.pidfile.unlink(missing_ok=True)
        say(how)

    def state(self) -> str:
        """One word on who runs it, for `status`."""
        pid = self.our_pid()
        if pid is not None:
            return f"running pid {pid}"
        return "external" if self.foreign() else "stopped"
