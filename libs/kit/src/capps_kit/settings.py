"""One settings base for every service: environment variables, typed, with safe defaults.

Defaults point at the local stack (`make up`), so a developer needs no configuration; outside
development, secrets that still hold a placeholder are refused at start.
"""

import socket
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]
PLACEHOLDER = "changethis"


class ServiceSettings(BaseSettings):
    """Settings every service shares; a service subclasses it and adds its own fields."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Environment = "development"
    log_level: str = "INFO"
    instance_id: str = socket.gethostname()

    def secret_fields(self) -> tuple[str, ...]:
        """Names of fields that hold secrets; subclasses list theirs."""
        return ()

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> "ServiceSettings":
        if self.environment == "production":
            for name in self.secret_fields():
                if str(getattr(self, name)) in ("", PLACEHOLDER):
                    raise ValueError(f"{name.upper()} must be set to a real secret in production")
        return self


class DatabaseSettings(BaseSettings):
    """PostgreSQL connection; `DATABASE_URL` is a `postgresql://` URL."""

    database_url: str = "postgresql://capps:capps@127.0.0.1:5432/capps"
    database_pool_size: int = 10


class RedisSettings(BaseSettings):
    """Redis connection; `REDIS_URL` is a `redis://` URL."""

    redis_url: str = "redis://127.0.0.1:6379/0"


class KafkaSettings(BaseSettings):
    """Kafka connection; `KAFKA_BOOTSTRAP_SERVERS` is a comma-separated host:port list."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
