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
    """The example overlay, copied to `workdir` with its secrets filled in as a user would."""
    shutil.copytree(K8S, workdir / "deploy" / "k8s")
    # The base includes deploy/kafka (the bus setup Job) by its relative path.
    shutil.copytree(K8S.parent / "kafka", workdir / "deploy" / "kafka")
    example = workdir / "deploy" / "k8s" / "overlays" / "example"
    for index, template in enumerate(sorted(example.glob("*.env.example"))):
        text = template.read_text().replace("<password>", "Zq8vP2xL9kR4")
        filled = re.sub(r"=$", f"=kR3w9xQ7vL2p{index}", text, flags=re.M)
        (example / template.name.removesuffix(".example")).write_text(filled)
    return kustomize_build(example)
