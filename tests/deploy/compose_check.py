"""Loads a compose file as `docker compose` would, with deploy/compose-check (compose-go)."""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.go_tools import REPO, go_tool

__all__ = ["REPO", "Loaded", "load_compose"]


@dataclass(frozen=True)
class Loaded:
    """What compose-go made of a compose file: the project, or why it refused it."""

    returncode: int
    project: dict[str, Any]
    error: str


def load_compose(path: Path, env: dict[str, str], env_files: tuple[Path, ...] = ()) -> Loaded:
    """Load `path` as `docker compose` would, with exactly `env` as the process environment."""
    argv = [str(go_tool("compose-check"))]
    for env_file in env_files:
        argv += ["-env-file", str(env_file)]
    argv.append(str(path))
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    project = json.loads(result.stdout) if result.returncode == 0 else {}
    return Loaded(result.returncode, project, result.stderr)
