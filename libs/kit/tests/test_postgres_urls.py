"""DATABASE_URL in its spellings -> what asyncpg and alembic's SQLAlchemy dialect take."""

import pytest

from capps_kit.postgres import asyncpg_dsn, sqlalchemy_url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://capps:pw@db:5432/capps",
        "postgres://capps:pw@db:5432/capps",
        "postgresql+asyncpg://capps:pw@db:5432/capps",
    ],
)
def test_every_spelling_reaches_the_same_database(url: str) -> None:
    assert asyncpg_dsn(url) == "postgresql://capps:pw@db:5432/capps"
    assert sqlalchemy_url(url) == "postgresql+asyncpg://capps:pw@db:5432/capps"


def test_a_url_without_a_scheme_is_refused_with_the_expected_shape() -> None:
    with pytest.raises(ValueError, match="postgresql://user:password@host:port/db"):
        asyncpg_dsn("capps:pw@db/capps")
