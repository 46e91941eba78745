"""One settings base for every service: environment variables, typed, with safe defaults.

Defaults point at the local stack (`make up`), so a developer needs no configuration; outside
development, secrets that still hold a placeholder are refused at start.
"""

import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from capps_kit.kafka_security import KafkaSaslMechanism, KafkaSecurity, KafkaSecurityProtocol

Environment = Literal["development", "test", "production"]
PLACEHOLDER = "changethis"
# Values seen in examples and defaults; compared case-insensitively, so "ChangeThis" is refused.
TRIVIAL_SECRETS = frozenset(
    {
        "changethis", "changeme", "change-me", "change_me", "changeit", "secret", "password",
        "passw0rd", "admin", "root", "default", "example", "test", "todo", "none", "null",
        "capps", "postgres", "redis", "kafka", "letmein", "123456", "12345678", "qwerty",
    }
)  # fmt: skip
MIN_SECRET_LENGTH = 12


def weak_secret_reason(value: str) -> str | None:
    """Why a value cannot serve as a production secret, or None when it can.

    Refuses what a person leaves by accident: empty, a known placeholder in any case (also
    inside a longer value, like "changethis-please"), one repeated character, or too short.
    """
    folded = value.strip().casefold()
    if not folded:
        return "is empty"
    if folded in TRIVIAL_SECRETS or any(word in folded for word in ("changethis", "changeme")):
        return "is a placeholder"
    if len(set(folded)) == 1:
        return "repeats one character"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


class ServiceSettings(BaseSettings):
    """Settings every service shares; a service subclasses it and adds its own fields."""

    # Errors never echo the input: a refused secret must not reach the logs.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    environment: Environment = "development"
    log_level: str = "INFO"
    instance_id: str = socket.gethostname()
    # OpenTelemetry, by its standard variables: spans go over OTLP/HTTP to this endpoint
    # (`/v1/traces` is appended); unset or empty, the service makes no spans at all.
    otel_exporter_otlp_endpoint: str = ""
    otel_service_name: str = ""

    def secret_fields(self) -> tuple[str, ...]:
        """Names of fields that hold secrets; subclasses list theirs."""
        return ()

    def production_secrets(self) -> dict[str, str]:
        """Every secret this service holds, by the name a person sets it with."""
        found = {name.upper(): str(getattr(self, name)) for name in self.secret_fields()}
        if isinstance(self, DatabaseSettings):
            # The database's default password (capps) must not reach production either.
            found["the password in DATABASE_URL"] = urlsplit(self.database_url).password or ""
        if isinstance(self, KafkaSettings) and self.kafka_security.uses_sasl:
            found["KAFKA_SASL_PASSWORD"] = self.kafka_sasl_password
        if isinstance(self, RedisSettings):
            password = urlsplit(self.redis_url).password
            if password is not None:  # Redis without a password is a network-level decision
                found["the password in REDIS_URL"] = password
        return found

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> "ServiceSettings":
        if self.environment == "production":
            for name, value in self.production_secrets().items():
                reason = weak_secret_reason(value)
                if reason is not None:
                    raise ValueError(f"{name} {reason}: set a real secret in production")
        return self


API_AUDIENCE = "capps-api"
"""The `aud` of access tokens for the partner API: the registry signs it, the gateway expects it."""


class TokenSettings(BaseSettings):
    """The expected `iss` and `aud` of access tokens (names, not secrets)."""

    token_issuer: str = "http://127.0.0.1:8080"  # noqa: S105 - a URL, not a secret
    token_audience: str = API_AUDIENCE


class DatabaseSettings(BaseSettings):
    """PostgreSQL connection; `DATABASE_URL` is a `postgresql://` URL."""

    # It holds a password: kept out of the settings' repr, as every secret is.
    database_url: str = Field(default="postgresql://capps:capps@127.0.0.1:5432/capps", repr=False)
    database_pool_size: int = 10
    # Statements each connection keeps prepared. 0 behind a pooler in transaction mode
    # (PgBouncer, RDS Proxy): a statement prepared in one transaction lives on a server
    # connection the next transaction of the same client may not get.
    database_statement_cache_size: int = Field(default=100, ge=0, le=10_000)


class RedisSettings(BaseSettings):
    """Redis connection; `REDIS_URL` is a `redis://` URL."""

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)  # may hold a password


class KafkaSettings(BaseSettings):
    """Kafka connection; `KAFKA_BOOTSTRAP_SERVERS` is a comma-separated host:port list.

    Security (the compose file and Kubernetes use SASL/SCRAM): `KAFKA_SECURITY_PROTOCOL`
    (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`,
    `KAFKA_SASL_PASSWORD` and `KAFKA_SSL_CAFILE` (the CA that signed the brokers' certificates).
    """

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = Field(default="", repr=False)
    kafka_ssl_cafile: Path | None = None

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> "KafkaSettings":
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How every Kafka client of this service authenticates (capps_kit.kafka)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            cafile=self.kafka_ssl_cafile,
        )
