"""The local stack's PostgreSQL starts from a checkout under a 0700 parent, as `mktemp -d` makes.

As root the server runs as the `postgres` user, which cannot enter such a parent; the stack
then keeps that cluster in /var/tmp. The last test starts a real server that way.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from capps_stack import cli, postgres
from tests.infra import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def closed_parent() -> Iterator[Path]:
    """A directory only its owner may enter, like `mktemp -d` makes."""
    path = Path(tempfile.mkdtemp(prefix="capps-0700-"))
    assert (path.stat().st_mode & 0o777) == 0o700
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_closed_parent_is_found(closed_parent: Path) -> None:
    assert postgres.blocked_parent(closed_parent / "checkout" / ".local" / "postgres") == (
        closed_parent
    )
    assert postgres.blocked_parent(Path("/var/tmp/x/y")) is None


def test_the_cluster_moves_only_when_the_server_cannot_reach_it(closed_parent: Path) -> None:
    local = closed_parent / "checkout" / ".local"
    assert postgres.cluster_home(local, other_user=False) == local / "postgres"
    moved = postgres.cluster_home(local, other_user=True)
    assert moved.parent == Path("/var/tmp")
    assert moved == postgres.cluster_home(local, other_user=True)
    assert moved != postgres.cluster_home(closed_parent / "other" / ".local", other_user=True)
    open_local = Path("/var/tmp") / "capps-open" / ".local"
    assert postgres.cluster_home(open_local, other_user=True) == open_local / "postgres"


def test_postgres_starts_from_a_checkout_under_a_closed_parent(closed_parent: Path) -> None:
    local = closed_parent / "checkout" / ".local"
    port = free_port()
    ctx = cli.make_context({"CAPPS_LOCAL_DIR": str(local), "CAPPS_POSTGRES_PORT": str(port)})
    part = next(p for p in cli.all_parts(ctx) if p.name == "postgres")
    assert isinstance(part, postgres.Postgres)
    home = part.home
    try:
        assert cli.cmd_up(ctx, ["postgres"]) == 0
        assert part.healthy()
        where = ["-h", "127.0.0.1", "-p", str(port), "-U", "capps", "-d", "capps"]
        probe = subprocess.run(
            [part.psql(), "-X", "-tAc", "SELECT current_user", *where],
            env={**os.environ, "PGPASSWORD": "capps"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert probe.stdout.strip() == "capps", probe.stderr
        if os.geteuid() == 0:
            assert home.parent == Path("/var/tmp")
            assert (local / "postgres" / "data").resolve() == home / "data"
    finally:
        cli.cmd_down(ctx, ["postgres"])
        if home.parent == Path("/var/tmp"):
            shutil.rmtree(home, ignore_errors=True)
    assert not part.healthy()
