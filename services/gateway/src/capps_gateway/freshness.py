"""Whether the compiled gateway modules (services/gateway/native.py) are older than the code.

Compiled code bakes in what mypy knew when it was built: its own modules, and the types of
everything they use (the settings, the event contract, the kit). So a build is stale once any
of those sources is newer than the oldest extension, not only the compiled module's own.
Standard library only: native.py loads this file on its own, without the package.
"""

from collections.abc import Iterable
from pathlib import Path


def extensions(package: Path) -> list[Path]:
    """The compiled modules in `package` and its subpackages."""
    return list(package.rglob("*.so"))


def sources(package: Path) -> list[Path]:
    """The Python sources a build of `package` depends on: its own and the workspace libs'."""
    libs = package.parents[3] / "libs"
    return [*package.rglob("*.py"), *libs.glob("*/src/*/**/*.py")]


def newer_source(built: Iterable[Path], code: Iterable[Path]) -> Path | None:
    """A source changed after the oldest of `built`, if any (None: the build is current)."""
    dates = [path.stat().st_mtime for path in built]
    if not dates:
        return None
    oldest = min(dates)
    return next((path for path in code if path.stat().st_mtime > oldest), None)
