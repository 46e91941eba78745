"""`python -m capps_aggregator migrate | worker [faust options] | rebuild-redis | retention`."""

import asyncio
import sys

from capps_aggregator.app import create_app
from capps_aggregator.migrate import migrate
from capps_aggregator.runtime import expire_usage, rebuild_hot_store
from capps_aggregator.settings import AggregatorSettings
from capps_kit.logging import configure_logging

USAGE = "usage: python -m capps_aggregator migrate | worker [faust worker options] | rebuild-redis"
# Faust's CLI knows these spellings only; the services share Python's names (WARNING...).
_FAUST_LEVELS = {"WARNING": "WARN", "CRITICAL": "CRIT", "FATAL": "CRIT"}


def faust_log_level(level: str) -> str:
    """LOG_LEVEL as faust's `--loglevel` accepts it."""
    name = level.strip().upper()
    return _FAUST_LEVELS.get(name, name)


def _progress(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    """Run the migrations, rebuild Redis, or hand the command line to faust's CLI."""
    settings = AggregatorSettings()
    command = argv[1] if len(argv) > 1 else ""
    if command == "migrate":
        configure_logging("usage-aggregator", settings.log_level)
        migrate(settings.database_url, settings.aggregator_migrate_wait_s)
        return 0
    if command == "rebuild-redis":
        configure_logging("usage-aggregator", settings.log_level)
        asyncio.run(rebuild_hot_store(settings, _progress))
        return 0
    if command == "retention":
        configure_logging("usage-aggregator", settings.log_level)
        asyncio.run(expire_usage(settings, _progress))
        return 0
    if command == "worker":
        # Faust's `worker` command turns its own web server on unless told otherwise, and that
        # one would bind 0.0.0.0:6066, the admin endpoint's port; it also logs at WARN unless
        # given LOG_LEVEL.
        options = ["--without-web", f"--loglevel={faust_log_level(settings.log_level)}"]
        sys.argv = [argv[0], "worker", *options, *argv[2:]]
        create_app(settings).main()
    sys.stderr.write(USAGE + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
