"""Production refuses placeholder, trivial and default secrets; development keeps its defaults."""

import pytest
from pydantic import Field, ValidationError

from capps_kit.settings import (
    PLACEHOLDER,
    DatabaseSettings,
    RedisSettings,
    ServiceSettings,
    weak_secret_reason,
)

REAL_DB_URL = "postgresql://capps:Xq7-vT9pL2mRw4sZ@db.internal:5432/capps"


class SecretHolder(ServiceSettings, DatabaseSettings, RedisSettings):
    """A service with one secret field, a database and Redis, like the registry."""

    api_key: str = Field(default=PLACEHOLDER, repr=False)

    def secret_fields(self) -> tuple[str, ...]:
        return ("api_key",)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEY", "DATABASE_URL", "REDIS_URL", "ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "changethis",
        "ChangeThis",
        "CHANGEME",
        "changethis-in-production",
        "password",
        "Passw0rd",
        "capps",
        "postgres",
        "secret",
        "aaaaaaaaaaaaaaaaaaaa",
        "short-Val1",
    ],
)
def test_weak_values_are_named_weak(value: str) -> None:
    assert weak_secret_reason(value) is not None


def test_a_generated_value_is_accepted() -> None:
    assert weak_secret_reason("kR3-9vQzLw8_sT2xYp4m") is None


def test_development_keeps_the_local_defaults() -> None:
    settings = SecretHolder()
    assert settings.api_key == PLACEHOLDER
    assert settings.database_url.startswith("postgresql://capps:capps@")


def test_production_refuses_a_placeholder_in_any_case() -> None:
    with pytest.raises(ValidationError, match="API_KEY is a placeholder"):
        SecretHolder(environment="production", api_key="CHANGETHIS", database_url=REAL_DB_URL)


def test_production_refuses_the_default_database_password() -> None:
    with pytest.raises(ValidationError, match="password in DATABASE_URL is a placeholder"):
        SecretHolder(environment="production", api_key="kR3-9vQzLw8_sT2xYp4m")


def test_production_refuses_a_database_url_without_password() -> None:
    with pytest.raises(ValidationError, match="password in DATABASE_URL is empty"):
        SecretHolder(
            environment="production",
            api_key="kR3-9vQzLw8_sT2xYp4m",
            database_url="postgresql://capps@db:5432/capps",
        )


def test_production_refuses_a_trivial_redis_password() -> None:
    with pytest.raises(ValidationError, match="password in REDIS_URL is a placeholder"):
        SecretHolder(
            environment="production",
            api_key="kR3-9vQzLw8_sT2xYp4m",
            database_url=REAL_DB_URL,
            redis_url="redis://:redis@cache:6379/0",
        )


def test_production_accepts_real_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("API_KEY", "kR3-9vQzLw8_sT2xYp4m")
    monkeypatch.setenv("DATABASE_URL", REAL_DB_URL)
    monkeypatch.setenv("REDIS_URL", "redis://:Zp8-qW3rT6yU1iO9@cache:6379/0")
    settings = SecretHolder()
    assert settings.environment == "production"
    assert settings.api_key == "kR3-9vQzLw8_sT2xYp4m"


def test_a_refused_secret_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ValidationError) as caught:
        SecretHolder(
            environment="production",
            api_key="kR3-9vQzLw8_sT2xYp4m",
            database_url=("postgresql://capps:hunter2@db:5432/capps"),
        )
    assert "hunter2" not in str(caught.value)
    assert "kR3-9vQzLw8_sT2xYp4m" not in str(caught.value)
