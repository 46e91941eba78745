"""PostgreSQL: the running server when there is one, else a cluster of the stack's own."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path

from .config import HOST, StackError, urls
from .part import Part
from .process import is_root, pid_start_time, port_open, reap_orphans, run, say, tail


def version_key(name: str) -> tuple[int, ...]:
    """Sort key of a PostgreSQL major version directory name ("15", "9.6")."""
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


# CREATEROLE: the registry's migrations create its roles (row-level security binds them).
PG_ENSURE_ROLE_AND_DB = """\
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'capps') THEN
    CREATE ROLE capps LOGIN PASSWORD 'capps' CREATEDB CREATEROLE;
  END IF;
END
$$;
ALTER ROLE capps CREATEDB CREATEROLE;
SELECT 'CREATE DATABASE capps OWNER capps'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'capps')\\gexec
"""


def blocked_parent(path: Path) -> Path | None:
    """The first directory above `path` that other users cannot enter (no o+x), if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.stat().st_mode & 0o001:
            return parent
    return None


def cluster_home(local: Path, *, other_user: bool) -> Path:
    """Where the stack's own cluster lives: <state>/postgres, if the server can reach it.

    The server runs as the `postgres` user when the stack runs as root, and that user must
    traverse every parent of its data directory. A checkout under a 0700 parent (`mktemp -d`)
    is closed to it: the cluster then lives in /var/tmp, under a name derived from the state
    directory, so every run of this stack finds the same one.
    """
    preferred = local / "postgres"
    if not other_user or blocked_parent(preferred) is None:
        return preferred
    digest = hashlib.sha256(str(local).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"capps-postgres-{digest}"  # noqa: S108 - data inside is 0700, owned by postgres


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding a server, if any."""
    root = Path("/usr/lib/postgresql")
    found = (
        [d for d in root.glob("*") if (d / "bin" / "postgres").exists()] if root.exists() else []
    )
    if not found:
        return None
    return max(found, key=lambda d: version_key(d.name)) / "bin"


class Postgres(Part):
    """PostgreSQL: the running server when there is one, else our own cluster in .local."""

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: SIGTERM ("smart") waits for every client.
    stop_signal = signal.SIGINT
    stop_timeout = 30.0

    @property
    def port(self) -> int:
        return self.ctx.ports.postgres

    @property
    def address(self) -> str:
        return urls(self.ctx.ports)["DATABASE_URL"]

    @property
    def home(self) -> Path:
        """Data and socket directories of our own cluster (see cluster_home)."""
        return cluster_home(self.ctx.local, other_user=self.run_as() is not None)

    def run_as(self) -> str | None:
        """Root may not run PostgreSQL: switch to the packaged `postgres` user."""
        return "postgres" if is_root() else None

    def psql(self) -> str:
        """A psql binary, installing the client when there is none."""
        found = shutil.which("psql")
        if found:
            return found
        bindir = postgres_bin()
        if bindir is not None and (bindir / "psql").exists():
            return str(bindir / "psql")
        self.ctx.apt_install(["postgresql-client"], "psql is missing")
        return shutil.which("psql") or "psql"

    def capps_can_log_in(self) -> bool:
        """Whether role capps reaches database capps over TCP with its password."""
        return self.capps_query("SELECT 1") is not None

    def capps_can_create_roles(self) -> bool:
        """Whether role capps may create roles (a cluster made before it needed to may not)."""
        found = self.capps_query(
            "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        return found == "t"

    def capps_query(self, sql: str) -> str | None:
        """One value of a query run as capps over TCP, or None if capps cannot run it."""
        env = {**os.environ, "PGPASSWORD": "capps", "PGCONNECT_TIMEOUT": "3"}
        argv = [
            self.psql(),
            "-X",
            "-q",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            "capps",
            "-d",
            "capps",
            "-tAc",
            sql,
        ]
        result = run(argv, env=env, timeout=15)
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def accepting(self) -> bool:
        """Whether the server accepts connections (not starting up or recovering)."""
        isready = shutil.which("pg_isready")
        if isready is None:
            return port_open(self.port)
        argv = [isready, "-q", "-h", HOST, "-p", str(self.port), "-t", "2"]
        return run(argv, timeout=10).returncode == 0

    def healthy(self) -> bool:
        return self.accepting() and self.capps_can_log_in()

    def wait(self) -> None:
        self.wait_for(self.accepting, f"{HOST}:{self.port} accepting connections")
        if not self.capps_can_log_in() or not self.capps_can_create_roles():
            self.ensure_role_and_database()
        self.wait_for(self.capps_can_log_in, "role capps logs in to database capps")

    def ensure_role_and_database(self) -> None:
        """Create role capps (password capps, CREATEDB CREATEROLE) and database capps."""
        ours = self.our_pid() is not None
        argv = [
            self.psql(),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-p",
            str(self.port),
            "-d",
            "postgres",
        ]
        if ours:
            argv += ["-h", str(self.socket_dir())]
        user = self.run_as()
        if user is None and not ours:
            raise StackError(
                f"role capps cannot log in to database capps on port {self.port}, or may not "
                "create roles; create or alter them "
                "as a superuser: CREATE ROLE capps LOGIN PASSWORD 'capps' CREATEDB CREATEROLE; "
                "CREATE DATABASE capps OWNER capps;"
            )
        say("  creating or updating role capps (CREATEDB CREATEROLE) and database capps")
        with self.log.open("ab") as out:
            self.log_header(out, argv)
            result = run(argv, user=user, cwd=Path("/"), stdin_text=PG_ENSURE_ROLE_AND_DB, log=out)
        if result.returncode != 0:
            raise StackError(
                f"could not create role/database capps; see {self.ctx.rel(self.log)}:\n"
                f"{tail(self.log)}"
            )

    def socket_dir(self) -> Path:
        """Our cluster's Unix socket directory (short enough for the 107-byte socket path)."""
        preferred = self.home / "socket"
        if len(str(preferred)) < 80:
            return preferred
        return Path("/tmp") / f"capps-pg-{self.port}"  # noqa: S108 - a socket dir, owner-only

    def check_traversable(self, path: Path) -> None:
        """The postgres user must reach the data directory through every parent."""
        blocked = blocked_parent(path)
        if blocked is not None:
            mode = blocked.stat().st_mode
            raise StackError(
                f"the postgres user cannot enter {blocked} (mode {oct(mode & 0o777)}); "
                "set CAPPS_LOCAL_DIR to a directory under /var/tmp or /tmp"
            )

    def link_from_state_dir(self, data: Path) -> None:
        """Point <state>/postgres/data at a cluster kept elsewhere, for people looking for it."""
        link = self.ctx.local / "postgres" / "data"
        if link.is_symlink() or link.exists() or link == data:
            return
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(data, target_is_directory=True)

    def clear_stale_locks(self, data: Path) -> None:
        """Remove the lock files of a postmaster that is dead (or an unreaped zombie).

        PostgreSQL itself only asks whether the pid in a lock file exists, and a zombie does;
        orphaned backends go first, since a new postmaster refuses shared memory still attached.
        Both the data directory's and the socket's lock name the postmaster.
        """
        for lock in (data / "postmaster.pid", self.socket_dir() / f".s.PGSQL.{self.port}.lock"):
            try:
                old = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid_start_time(old) is not None:
                continue
            reap_orphans(old)
            say(f"  postgres: removing {self.ctx.rel(lock)} of dead postmaster {old}")
            lock.unlink(missing_ok=True)

    def launch(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            self.ctx.apt_install(["postgresql"], "PostgreSQL is not installed")
            # The package may start its own cluster on the default port: then use that one.
            if self.foreign():
                say(f"  postgres: the packaged server now answers on {self.port}; using it")
                return
            bindir = postgres_bin()
            if bindir is None:
                raise StackError("apt-get installed postgresql but no server binary was found")
        user = self.run_as()
        data = self.home / "data"
        sockets = self.socket_dir()
        for directory in (self.home, data, sockets):
            directory.mkdir(parents=True, exist_ok=True)
        for directory in (data, sockets):
            directory.chmod(0o700)
            if user:
                shutil.chown(directory, user, user)
        if user:
            self.check_traversable(data)
        if self.home != self.ctx.local / "postgres":
            closed = blocked_parent(self.ctx.local / "postgres")
            say(f"  postgres: {closed} is closed to the postgres user; cluster in {data}")
            self.link_from_state_dir(data)
        self.clear_stale_locks(data)
        if not (data / "PG_VERSION").exists():
            say(f"  initdb {self.ctx.rel(data)}")
            self.run_logged(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                ],
                user=user,
                cwd=self.home,
                what="initdb",
            )
        self.spawn(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={HOST}",
                "-c",
                f"unix_socket_directories={sockets}",
            ],
            user=user,
            cwd=self.home,
        )
