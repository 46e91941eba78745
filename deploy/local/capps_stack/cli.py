"""The command line: `up`, `down` and `status` over the parts, in start order."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .config import (
    KAFKA_ADMIN,
    REPO,
    Ports,
    StackError,
    env_file_text,
    kafka_client_env,
    kafka_password_variable,
    urls,
)
from .kafka import Kafka
from .part import Context, Part
from .postgres import Postgres
from .process import say
from .prometheus import Prometheus
from .redis import Redis
from .services import SERVICES, Service


def all_parts(ctx: Context) -> list[Part]:
    """Every part in start order; services last, the gateway after the registry's JWKS."""
    infra: list[Part] = [Kafka(ctx), Postgres(ctx), Redis(ctx), Prometheus(ctx)]
    return infra + [Service(ctx, spec) for spec in SERVICES]


def select(parts: list[Part], names: Sequence[str]) -> list[Part]:
    """The parts named on the command line (all when none), refusing unknown names."""
    if not names:
        return parts
    known = {part.name: part for part in parts}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise StackError(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [part for part in parts if part.name in names]


@contextlib.contextmanager
def locked(ctx: Context) -> Iterator[None]:
    """One `up`/`down` at a time per state directory."""
    with (ctx.run_dir / "stack.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another stack.py up/down is running here; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write_stack_env(ctx: Context) -> Path:
    """stack.env: the addresses for shells, tests and the benchmark, and the Kafka admin login.

    Shells, tests and the benchmark create topics and write test records, so they act as the
    admin principal; CAPPS_KAFKA_PASSWORDS names the file with each service's password (for
    the ACL tests). Mode 0600, as it holds a password.
    """
    path = ctx.local / "stack.env"
    admin = ctx.kafka_passwords()[kafka_password_variable(KAFKA_ADMIN)]
    values = {
        **urls(ctx.ports),
        **kafka_client_env(KAFKA_ADMIN, admin),
        "CAPPS_KAFKA_PASSWORDS": str(ctx.kafka_passwords_file),
    }
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(env_file_text(values))
    return path


def cmd_up(ctx: Context, names: Sequence[str]) -> int:
    """Start what is not running, in order, waiting for each to answer its health check."""
    started = time.monotonic()
    parts = select(all_parts(ctx), names)
    env_path = write_stack_env(ctx)
    ctx.secrets()
    infra = [part for part in parts if not isinstance(part, Service)]
    services = [part for part in parts if isinstance(part, Service)]
    # Infrastructure boots in parallel (Kafka is the slow one); services need it, so they
    # start one by one after it, each once the one before answers.
    found = {part.name: part.ensure() for part in infra}
    for part in infra:
        part.wait()
    for part in services:
        found[part.name] = part.ensure()
        part.wait()
    say(f"\nstack is up ({time.monotonic() - started:.1f}s):")
    for part in parts:
        note = {"external": "  (not started by this stack)", "started": "  (started)"}
        say(f"  {part.name:<11} {part.address}{note.get(found[part.name], '')}")
    kafka = next((part for part in parts if isinstance(part, Kafka)), None)
    if kafka is not None and kafka.topics_report:
        say("  topics:     " + kafka.topics_report.strip().replace("\n", "\n              "))
    say(f"  for your shell: set -a; . {ctx.rel(env_path)}; set +a")
    return 0


def cmd_down(ctx: Context, names: Sequence[str]) -> int:
    """Stop, in reverse order, what this stack started; leave everything else alone."""
    for part in reversed(select(all_parts(ctx), names)):
        part.stop()
    return 0


def cmd_status(ctx: Context, names: Sequence[str]) -> int:
    """One line per part: who runs it and whether it answers; exit 1 when any does not."""
    all_ok = True
    for part in select(all_parts(ctx), names):
        state = part.state()
        healthy = part.healthy() if state != "stopped" else False
        all_ok = all_ok and healthy
        mark = "ok" if healthy else "--"
        say(f"  {mark} {part.name:<11} {state:<18} {part.address}  log {ctx.rel(part.log)}")
    return 0 if all_ok else 1


def make_context(env: Mapping[str, str]) -> Context:
    """Read the environment and create the state directories."""
    local = Path(env.get("CAPPS_LOCAL_DIR") or REPO / ".local").resolve()
    raw_timeout = env.get("CAPPS_UP_TIMEOUT", "120")
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise StackError(f"CAPPS_UP_TIMEOUT={raw_timeout!r} is not a number of seconds") from None
    ctx = Context(REPO, local, Ports.from_env(env), timeout, dict(env))
    for directory in (ctx.local, ctx.run_dir, ctx.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    # Other users (the postgres user) must traverse the state directory to reach their data.
    ctx.local.chmod(0o755)
    return ctx


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(
        prog="stack.py",
        description=sys.modules[__package__ or __name__].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("parts", nargs="*", help="limit to these parts (default: all)")
    args = parser.parse_args(argv)
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status}
    try:
        ctx = make_context(os.environ)
        if args.command == "status":
            return cmd_status(ctx, args.parts)
        with locked(ctx):
            return commands[args.command](ctx, args.parts)
    except StackError as exc:
        say(f"\nerror: {exc}")
        if args.command == "up":
            say("what did start keeps running; `make down` stops it")
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted; `make down` stops what was started")
        return 130
