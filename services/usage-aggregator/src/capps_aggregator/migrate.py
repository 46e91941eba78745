"""`migrate`: wait for PostgreSQL, then bring the usage tables to the newest revision."""

import asyncio
import logging
import time
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from capps_kit.postgres import asyncpg_dsn, sqlalchemy_url
from capps_usage.readers import grant_readers

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An alembic configuration for this package's history, no ini file needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sqlalchemy_url"] = sqlalchemy_url(database_url)
    return config


async def wait_for_postgres(database_url: str, timeout_s: float) -> None:
    """Return once PostgreSQL accepts a connection; raise TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"PostgreSQL did not answer within {timeout_s:g} s") from exc
            log.info("waiting for PostgreSQL", extra={"reason": type(exc).__name__})
            await asyncio.sleep(1)
        else:
            await connection.close()
            return


def upgrade_head(database_url: str) -> None:
    """Apply every pending revision, then let the usage store's readers read (blocking)."""
    command.upgrade(alembic_config(database_url), "head")
    asyncio.run(_grant_readers(database_url))


async def _grant_readers(database_url: str) -> None:
    # The registry reads these tables as a role of its own; see capps_usage.readers.
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await grant_readers(conn)
    finally:
        await conn.close()


def migrate(database_url: str, wait_s: float) -> None:
    """The `migrate` command: wait for the database, then upgrade to head."""
    asyncio.run(wait_for_postgres(database_url, wait_s))
    upgrade_head(database_url)
    log.info("usage tables migrated")
