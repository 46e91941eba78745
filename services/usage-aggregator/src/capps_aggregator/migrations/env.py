"""Alembic environment of the usage tables, with its own version table.

The registry keeps its own alembic history in the same database, so this history records
itself in `alembic_version_usage` and the two never see each other's revisions.
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

VERSION_TABLE = "alembic_version_usage"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _offline(url: str) -> None:
    context.configure(url=url, literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


# The URL travels in `attributes`, not in the ini options, because configparser would
# interpolate any `%` of a percent-encoded password.
_url: str = context.config.attributes["sqlalchemy_url"]
if context.is_offline_mode():
    _offline(_url)
else:
    asyncio.run(_run_async(_url))
