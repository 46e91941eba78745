"""Run the registry's migrations: wait for PostgreSQL, then `alembic upgrade head`."""

import asyncio
import time
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from capps_kit.postgres import asyncpg_dsn

MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(database_url: str, secret_pepper: bytes | None = None) -> Config:
    """An alembic config pointing at this package's scripts and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option, so '%' in a password needs no escaping.
    config.attributes["database_url"] = database_url
    # Revision 0003 keys the stored secret digests with it (needed only if there are some).
    config.attributes["secret_pepper"] = secret_pepper
    return config


def upgrade(database_url: str, secret_pepper: bytes) -> None:
    """Bring the schema to the newest revision (blocking; runs its own event loop)."""
    command.upgrade(alembic_config(database_url, secret_pepper), "head")


async def wait_for_database(database_url: str, timeout_s: float = 30.0) -> None:
    """Return once PostgreSQL accepts a connection; raise the last error after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
        # Refused, timed out or still starting up: worth waiting for. Bad credentials are not.
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            await conn.close()
            return
