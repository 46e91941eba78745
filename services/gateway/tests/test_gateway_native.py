"""The guard against compiled gateway modules older than the code (capps_gateway/freshness.py)."""

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from capps_gateway import refuse_stale_build
from capps_gateway.freshness import extensions, newer_source, sources

SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


def _checkout(root: Path) -> Path:
    """A checkout's layout: the package with a compiled module and the group's library, a lib."""
    package = root / "services" / "gateway" / "src" / "capps_gateway"
    (package / "auth").mkdir(parents=True)
    for name in ("edge.py", "settings.py", "auth/verifier.py"):
        (package / name).write_text("x = 1\n")
    for name in (f"edge{SUFFIX}", f"native__mypyc{SUFFIX}", f"auth/verifier{SUFFIX}"):
        (package / name).write_bytes(b"\x7fELF")
    lib = root / "libs" / "events" / "src" / "capps_events"
    lib.mkdir(parents=True)
    (lib / "models.py").write_text("x = 1\n")
    _date(root.rglob("*.py"), 1_000)
    _date(root.rglob("*.so"), 2_000)
    return package


def _date(paths: Iterable[Path], when: float) -> None:
    for path in paths:
        os.utime(path, (when, when))


def test_a_build_newer_than_every_source_is_current(tmp_path: Path) -> None:
    package = _checkout(tmp_path)
    assert newer_source(extensions(package), sources(package)) is None
    refuse_stale_build(package)


@pytest.mark.parametrize(
    "edited",
    [
        "services/gateway/src/capps_gateway/edge.py",  # a compiled module
        "services/gateway/src/capps_gateway/settings.py",  # code a compiled module uses
        "services/gateway/src/capps_gateway/auth/verifier.py",  # in a subpackage
        "libs/events/src/capps_events/models.py",  # the event contract's types
    ],
)
def test_any_source_edited_after_the_build_is_refused_by_name(tmp_path: Path, edited: str) -> None:
    package = _checkout(tmp_path)
    _date([tmp_path / edited], 3_000)
    with pytest.raises(ImportError, match=rf"older than .*{Path(edited).name}.*make native"):
        refuse_stale_build(package)


def test_one_extension_older_than_a_source_makes_the_build_stale(tmp_path: Path) -> None:
    package = _checkout(tmp_path)
    _date([package / f"auth/verifier{SUFFIX}"], 500)
    assert newer_source(extensions(package), sources(package)) is not None


def test_without_compiled_modules_nothing_is_stale(tmp_path: Path) -> None:
    package = _checkout(tmp_path)
    for extension in extensions(package):
        extension.unlink()
    refuse_stale_build(package)
