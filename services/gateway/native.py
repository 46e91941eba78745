"""Compile the gateway's per-call modules to C extensions with mypyc: `python native.py`.

Why: the gateway spends most of its CPU per call in its own Python (serving, relaying,
checking, publishing), and its code is typed strictly enough for mypyc (the compiler mypy
itself, black and charset-normalizer ship with). Measured side by side against one nginx
upstream, the compiled modules cut the CPU per call by about a quarter (README, "Cost per
call"). The sources stay plain Python: mypy, the tests and a machine without a C compiler or
Python's headers (this script then says so and builds nothing) run them as they are.

The extensions are built in place, beside each module (`edge.cpython-311-*.so` next to
`edge.py`); Python imports an extension before the source of the same name. A build older
than the code (its modules, the rest of the package, the workspace libs: compiled code bakes in
their types) is refused at import (capps_gateway/freshness.py), so an edit is never shadowed
by a stale build: rebuild with `make native` (every make target that runs the gateway
does), or delete the extensions (`make native-clean`) to run interpreted.

Run from anywhere; `--check` only says whether the build is up to date (exit 1 if not).
"""

import argparse
import importlib.util
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from types import ModuleType

SOURCE_ROOT = Path(__file__).resolve().parent / "src"
PACKAGE = SOURCE_ROOT / "capps_gateway"
# The shared library of the group lives inside the package, so the wheel carries it.
GROUP_NAME = "capps_gateway.native"

# The modules a call runs through. Left out: start-up and background code (settings, runtime,
# workers, issuer discovery) where speed does not matter. tracing.py is in: its classes extend
# compiled ones, and an interpreted class cannot.
MODULES = (
    "access.py",
    "app.py",
    "appstate.py",
    "auth/claims.py",
    "auth/verifier.py",
    "call.py",
    "deadlines.py",
    "edge.py",
    "errors.py",
    "events.py",
    "headers.py",
    "journal.py",
    "metrics.py",
    "proxy.py",
    "ratelimit.py",
    "ratelimit_leases.py",
    "routes.py",
    "spool.py",
    "tracing.py",
    "upstream.py",
)


def freshness() -> ModuleType:
    """capps_gateway/freshness.py, loaded on its own: importing the package would run its
    stale-build guard, which refuses exactly what this script is about to rebuild."""
    spec = importlib.util.spec_from_file_location("gateway_freshness", PACKAGE / "freshness.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def why_build() -> str | None:
    """Why the modules need (re)building: one not built yet, or code changed since (the same
    rule as the package's guard); None when the build is current."""
    for name in MODULES:
        source = PACKAGE / name
        if not list(source.parent.glob(f"{source.stem}.*.so")):
            return f"{name} is not built"
    rule = freshness()
    changed = rule.newer_source(rule.extensions(PACKAGE), rule.sources(PACKAGE))
    return None if changed is None else f"{changed} changed since the last build"


def build(build_dir: Path) -> None:
    """Compile every listed module (mypyc compiles a group together) into the source tree."""
    # Imported here: only a build needs them, `--check` runs without.
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]  # ships no type hints

    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["MYPY_CACHE_DIR"] = str(build_dir / "mypy-cache")
    os.chdir(SOURCE_ROOT)
    setup(
        name="capps-gateway-native",
        ext_modules=mypycify(
            [f"capps_gateway/{name}" for name in MODULES],
            opt_level="3",
            target_dir=str(build_dir / "c"),
            group_name=GROUP_NAME,
        ),
        script_args=[
            "--quiet",
            "build_ext",
            "--inplace",
            "--build-temp",
            str(build_dir / "temp"),
            "--build-lib",
            str(build_dir / "lib"),
        ],
    )


def missing_build_tools() -> str | None:
    """What a build needs and this machine lacks: a C compiler, Python's headers."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "C compiler (cc; Debian: gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "Python headers (Python.h; Debian: python3-dev)"
    return None


def mark_built(started_at: float) -> None:
    """Date every extension to the build's start: setuptools leaves an unchanged module's file
    (the code is in the group's library) with its old date, which would read as stale, and a
    source edited during the build must still read as newer than its extension."""
    for extension in PACKAGE.rglob("*.so"):
        os.utime(extension, (started_at, started_at))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=Path(os.environ.get("CAPPS_LOCAL_DIR", ".local")) / "native-build",
        help="where the generated C and objects go (default: .local/native-build)",
    )
    args = parser.parse_args()
    reason = why_build()
    if reason is None:
        print(f"gateway native modules: {len(MODULES)} up to date")
        return 0
    if args.check:
        print(f"gateway native modules: stale, {reason}")
        return 1
    missing = missing_build_tools()
    if missing:
        print(
            f"gateway native modules: no {missing}, so the gateway runs interpreted"
            " (about a quarter more CPU per call); install it to compile them"
        )
        return 0
    print(
        f"gateway native modules: compiling {len(MODULES)} with mypyc ({reason};"
        " about a minute on 2 cores)",
        flush=True,
    )
    started, started_at = time.monotonic(), time.time()
    build(args.build_dir.resolve())
    mark_built(started_at)
    print(f"gateway native modules: built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
