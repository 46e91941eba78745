"""Builds the small Go tools under deploy/ once and caches them under .local/bin.

deploy/compose-check loads a compose file with compose-go (the loader `docker compose` uses);
deploy/kustomize-build renders a kustomization with the kustomize library; deploy/otel-collector
is a minimal OpenTelemetry Collector (OTLP receiver, file exporter). A binary is keyed by
the hash of its sources, so a change to the Go code or its pinned modules rebuilds it and
nothing else does.
"""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GO_CANDIDATES = ("/usr/local/go/bin/go", "go")


def go_binary() -> str:
    """The machine's Go toolchain; an AssertionError says how to get one."""
    for candidate in GO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise AssertionError("Go is needed to build the tools in deploy/: install it (go.dev/dl)")


def go_tool(name: str, timeout_s: float = 600) -> Path:
    """deploy/<name> built, building it when its sources changed since the cached build."""
    source = REPO / "deploy" / name
    digest = hashlib.sha256()
    for file in ("go.mod", "go.sum", "main.go"):
        digest.update((source / file).read_bytes())
    local = Path(os.environ.get("CAPPS_LOCAL_DIR") or REPO / ".local")
    binary = local / "bin" / f"{name}-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(f".{os.getpid()}.tmp")
    result = subprocess.run(
        [go_binary(), "build", "-o", str(partial), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, f"go build of deploy/{name} failed:\n{result.stderr}"
    partial.replace(binary)  # atomic: a concurrent run sees the whole binary or none
    return binary
