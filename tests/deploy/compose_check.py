"""Builds deploy/compose-check (compose-go, the loader `docker compose` uses) once, and runs it.

The binary is cached under .local/bin, keyed by the hash of its sources, so a change to the Go
code or its pinned modules rebuilds it and nothing else does.
"""

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "deploy" / "compose-check"
GO_CANDIDATES = ("/usr/local/go/bin/go", "go")


def go_binary() -> str:
    """The machine's Go toolchain; an AssertionError says how to get one."""
    for candidate in GO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise AssertionError("Go is needed to build deploy/compose-check: install it (go.dev/dl)")


def compose_check_binary() -> Path:
    """The built loader, building it when its sources changed since the cached build."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    local = Path(os.environ.get("CAPPS_LOCAL_DIR") or REPO / ".local")
    binary = local / "bin" / f"compose-check-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(f".{os.getpid()}.tmp")
    result = subprocess.run(
        [go_binary(), "build", "-o", str(partial), "."],
        cwd=SOURCE,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"go build of deploy/compose-check failed:\n{result.stderr}"
    partial.replace(binary)  # atomic: a concurrent run sees the whole binary or none
    return binary


@dataclass(frozen=True)
class Loaded:
    """What compose-go made of a compose file: the project, or why it refused it."""

    returncode: int
    project: dict[str, Any]
    error: str


def load_compose(path: Path, env: dict[str, str], env_files: tuple[Path, ...] = ()) -> Loaded:
    """Load `path` as `docker compose` would, with exactly `env` as the process environment."""
    argv = [str(compose_check_binary())]
    for env_file in env_files:
        argv += ["-env-file", str(env_file)]
    argv.append(str(path))
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    project = json.loads(result.stdout) if result.returncode == 0 else {}
    return Loaded(result.returncode, project, result.stderr)
