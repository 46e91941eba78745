"""Renders deploy/k8s as `kubectl apply -k` would, with deploy/kustomize-build (kustomize)."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.go_tools import REPO, go_tool

K8S = REPO / "deploy" / "k8s"
Objects = list[dict[str, Any]]


def kustomize_build(directory: Path) -> Objects:
    """The objects `kustomize build directory` makes."""
    result = subprocess.run(
        [str(go_tool("kustomize-build")), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_example_overlay(workdir: Path) -> Objects:
    """The example overlay, copied to `workdir` with its secrets.env filled in as a user would."""
    shutil.copytree(K8S, workdir / "k8s")
    example = workdir / "k8s" / "overlays" / "example"
    text = (example / "secrets.env.example").read_text().replace("<password>", "Zq8vP2xL9kR4")
    (example / "secrets.env").write_text(re.sub(r"=$", "=kR3w9xQ7vL2p", text, flags=re.M))
    return kustomize_build(example)
