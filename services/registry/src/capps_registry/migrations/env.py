"""Alembic environment: runs the registry's migrations over SQLAlchemy's asyncpg driver."""

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from capps_kit.postgres import sqlalchemy_url

# The usage aggregator keeps its own alembic history in the same database.
VERSION_TABLE = "alembic_version_registry"

config = context.config
database_url = sqlalchemy_url(config.attributes["database_url"])


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url, literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
