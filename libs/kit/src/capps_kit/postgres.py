"""PostgreSQL URLs and pools: asyncpg for queries, SQLAlchemy's asyncpg dialect for alembic."""

import asyncpg

from capps_kit.settings import DatabaseSettings


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+asyncpg://...` or `postgres://...` -> the `postgresql://` form asyncpg takes."""
    scheme, sep, rest = database_url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like postgresql://user:password@host:port/db")
    return f"postgresql://{rest}" if scheme.startswith(("postgresql", "postgres")) else database_url


def sqlalchemy_url(database_url: str) -> str:
    """The same database as a SQLAlchemy URL using the asyncpg driver (for alembic)."""
    return "postgresql+asyncpg://" + asyncpg_dsn(database_url).partition("://")[2]


async def create_pool(
    database_url: str, max_size: int = 10, *, statement_cache_size: int = 100
) -> "asyncpg.Pool[asyncpg.Record]":
    """A connection pool; the first connection is opened now so a bad URL fails fast.

    `statement_cache_size` 0 prepares nothing by name, for a pooler in transaction mode
    (DATABASE_STATEMENT_CACHE_SIZE).
    """
    pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(
        asyncpg_dsn(database_url),
        min_size=1,
        max_size=max_size,
        command_timeout=30,
        statement_cache_size=statement_cache_size,
    )
    return pool


async def settings_pool(
    settings: DatabaseSettings, max_size: int | None = None
) -> "asyncpg.Pool[asyncpg.Record]":
    """A service's pool as its settings say (DATABASE_URL, DATABASE_POOL_SIZE unless `max_size`
    is given, DATABASE_STATEMENT_CACHE_SIZE)."""
    return await create_pool(
        settings.database_url,
        max_size or settings.database_pool_size,
        statement_cache_size=settings.database_statement_cache_size,
    )


async def ping(pool: "asyncpg.Pool[asyncpg.Record]") -> None:
    """Raise unless PostgreSQL answers a trivial query."""
    await pool.fetchval("SELECT 1")
