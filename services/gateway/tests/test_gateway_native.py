"""The guard against compiled modules older than their source (capps_gateway/__init__.py)."""

import os
from pathlib import Path

import pytest

from capps_gateway import refuse_stale_extensions

EXTENSION = "edge.cpython-311-x86_64-linux-gnu.so"


def _package(tmp_path: Path, *, extension_age_s: float) -> Path:
    """A package with edge.py and a compiled edge dated `extension_age_s` before the source."""
    package = tmp_path / "capps_gateway"
    (package / "auth").mkdir(parents=True)
    source, extension = package / "edge.py", package / EXTENSION
    source.write_text("x = 1\n")
    extension.write_bytes(b"\x7fELF")
    # The group's shared library has no source of its own and is never stale.
    (package / "native__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    built = source.stat().st_mtime - extension_age_s
    os.utime(extension, (built, built))
    return package


def test_an_extension_older_than_its_source_is_refused(tmp_path: Path) -> None:
    package = _package(tmp_path, extension_age_s=5)
    with pytest.raises(ImportError, match=r"edge\.cpython.*older than edge\.py.*make native"):
        refuse_stale_extensions(package)


def test_a_stale_extension_in_a_subpackage_is_refused(tmp_path: Path) -> None:
    package = _package(tmp_path, extension_age_s=-5)
    (package / "auth" / "verifier.py").write_text("x = 1\n")
    extension = package / "auth" / "verifier.cpython-311-x86_64-linux-gnu.so"
    extension.write_bytes(b"\x7fELF")
    os.utime(extension, (0, 0))
    with pytest.raises(ImportError, match="verifier"):
        refuse_stale_extensions(package)


def test_extensions_built_after_their_source_are_accepted(tmp_path: Path) -> None:
    refuse_stale_extensions(_package(tmp_path, extension_age_s=-5))
