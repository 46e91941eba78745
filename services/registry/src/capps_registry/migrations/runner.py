"""Run the registry's migrations: wait for PostgreSQL, then `alembic upgrade head`."""

import asyncio
import time
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from capps_kit.postgres import asyncpg_dsn
from capps_registry.migrations.roles import ensure_login_role
from capps_usage.readers import grant_readers

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


def upgrade(database_url: str, secret_pepper: bytes, app_database_url: str | None = None) -> None:
    """Bring the schema to the newest revision, then set up the service's login role.

    Blocking; runs its own event loops. `database_url` is the owner's; the role of
    `app_database_url` (if given) is what the service connects as.
    """
    command.upgrade(alembic_config(database_url, secret_pepper), "head")
    asyncio.run(grant_access(database_url, app_database_url))


async def grant_access(database_url: str, app_database_url: str | None) -> None:
    """What the schema's revisions cannot do once for all: the login role, the usage tables."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # The usage tables may have been created (by the aggregator) after this role was.
        await grant_readers(conn)
        if app_database_url is not None:
            await ensure_login_role(conn, app_database_url)
    finally:
        await conn.close()


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
