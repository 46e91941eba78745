"""The API gateway: checks tokens and permissions, proxies calls, emits one event per call.

Its per-call modules may be compiled with mypyc (services/gateway/native.py). Python imports an
extension module before the source beside it, so in a checkout one older than its source is
refused here rather than run in place of the edit. An installed wheel is left alone: its files
carry the install's dates and change only together.
"""

from pathlib import Path


def refuse_stale_extensions(package: Path) -> None:
    """Raise ImportError if a compiled module in `package` is older than its source."""
    for extension in package.rglob("*.so"):
        source = extension.with_name(extension.name.split(".", 1)[0] + ".py")
        if source.exists() and extension.stat().st_mtime < source.stat().st_mtime:
            raise ImportError(
                f"{extension} is older than {source.name}: rebuild it with `make native`,"
                " or remove the compiled modules with `make native-clean` to run interpreted"
            )


_PACKAGE = Path(__file__).parent
if (_PACKAGE.parents[1] / "native.py").exists():
    refuse_stale_extensions(_PACKAGE)
