"""The API gateway: checks tokens and permissions, proxies calls, emits one event per call.

Its per-call modules may be compiled with mypyc (services/gateway/native.py). Python imports an
extension module before the source beside it, so in a checkout a build older than the code is
refused here (freshness.py) rather than run in place of the edit. An installed wheel is left
alone: its files carry the install's dates and change only together.
"""

from pathlib import Path

from capps_gateway.freshness import extensions, newer_source, sources


def refuse_stale_build(package: Path) -> None:
    """Raise ImportError if a source changed after the package's compiled modules were built."""
    changed = newer_source(extensions(package), sources(package))
    if changed is not None:
        raise ImportError(
            f"the compiled gateway modules are older than {changed}: rebuild them with"
            " `make native`, or remove them with `make native-clean` to run interpreted"
        )


_PACKAGE = Path(__file__).parent
if (_PACKAGE.parents[1] / "native.py").exists():
    refuse_stale_build(_PACKAGE)
