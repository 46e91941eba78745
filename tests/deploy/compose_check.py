"""Loads a compose file as `docker compose` would, with deploy/compose-check (compose-go)."""

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.go_tools import REPO, go_tool

__all__ = [
    "COMPOSE",
    "ENV_EXAMPLE",
    "REPO",
    "REQUIRED_SECRETS",
    "Loaded",
    "filled_env",
    "load_compose",
]

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
# What compose refuses to start without (`${NAME:?...}`): every secret a user must fill in.
REQUIRED_SECRETS = tuple(sorted(set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", COMPOSE.read_text()))))


def filled_env(tmp_path: Path) -> Path:
    """.env.example with every required secret filled in, as a user's .env would be."""
    text = ENV_EXAMPLE.read_text()
    for index, name in enumerate(REQUIRED_SECRETS):
        text = re.sub(rf"^{name}=$", f"{name}=a{index}f3e9c2b7d41a05e6c8b9f2d3", text, flags=re.M)
    env_file = tmp_path / "filled.env"
    env_file.write_text(text)
    return env_file


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
