"""The registry's settings, read from environment variables with local-stack defaults."""

from pathlib import Path

from pydantic import Field

from capps_events import APPS_TOPIC
from capps_kit.settings import (
    PLACEHOLDER,
    DatabaseSettings,
    KafkaSettings,
    RedisSettings,
    ServiceSettings,
)


class RegistrySettings(ServiceSettings, DatabaseSettings, RedisSettings, KafkaSettings):
    """Where the registry listens, how it signs tokens and where its stores are."""

    registry_host: str = "127.0.0.1"
    registry_port: int = Field(default=8080, ge=1, le=65535)
    token_issuer: str = "http://127.0.0.1:8080"  # noqa: S105 - a URL, not a secret
    token_audience: str = "capps-api"  # noqa: S105 - an audience name, not a secret
    token_ttl_seconds: int = Field(default=3600, gt=0, le=86400)
    # Encrypts signing keys at rest; the placeholder works in development only.
    registry_key_encryption_key: str = Field(default=PLACEHOLDER, repr=False)
    # Keys the client-secret digests (HMAC-SHA-256); must not change once secrets exist.
    registry_secret_pepper: str = Field(default=PLACEHOLDER, repr=False)
    catalog_path: Path | None = None
    # The compacted topic app states go to; tests point it at a topic of their own.
    registry_apps_topic: str = Field(default=APPS_TOPIC, min_length=1)
    # Run the outbox relay in this process; turn off only where another registry runs it.
    registry_outbox_relay: bool = True
    # NOTIFY wakes the relay at once; the poll only bounds the delay if a notification is lost.
    registry_outbox_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    registry_outbox_batch_size: int = Field(default=500, ge=1, le=10_000)

    def secret_fields(self) -> tuple[str, ...]:
        """The key-encryption key and the secret pepper must be real secrets in production."""
        return ("registry_key_encryption_key", "registry_secret_pepper")

    @property
    def issuer(self) -> str:
        """The issuer without a trailing slash, the base of every advertised endpoint."""
        return self.token_issuer.rstrip("/")

    @property
    def pepper(self) -> bytes:
        """The key of the client-secret digests."""
        return self.registry_secret_pepper.encode()
