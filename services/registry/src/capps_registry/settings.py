"""The registry's settings, read from environment variables with local-stack defaults."""

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field

from capps_events import APPS_TOPIC
from capps_kit.settings import (
    PLACEHOLDER,
    DatabaseSettings,
    KafkaSettings,
    RedisSettings,
    ServiceSettings,
    TokenSettings,
)
from capps_registry.oauth.throttle import FailureLimits


class RegistrySettings(
    ServiceSettings, DatabaseSettings, RedisSettings, KafkaSettings, TokenSettings
):
    """Where the registry listens, how it signs tokens and where its stores are."""

    registry_host: str = "127.0.0.1"
    registry_port: int = Field(default=8080, ge=1, le=65535)
    token_ttl_seconds: int = Field(default=3600, gt=0, le=86400)
    # Encrypts signing keys at rest; the placeholder works in development only.
    registry_key_encryption_key: str = Field(default=PLACEHOLDER, repr=False)
    # Keys the client-secret digests (HMAC-SHA-256); must not change once secrets exist.
    registry_secret_pepper: str = Field(default=PLACEHOLDER, repr=False)
    # The login role the service connects as (its DATABASE_URL): `registry migrate`, run with
    # the owner's DATABASE_URL, creates or updates it (password included) as a member of
    # capps_registry_app, bound by row-level security. Unset: the role is managed elsewhere.
    registry_app_database_url: str | None = Field(default=None, repr=False)
    # The outbox relay's LISTEN needs a session of its own: behind a pooler in transaction
    # mode, point this at PostgreSQL directly (same role as DATABASE_URL). Unset: DATABASE_URL.
    registry_listen_database_url: str | None = Field(default=None, repr=False)
    catalog_path: Path | None = None
    # The compacted topic app states go to; tests point it at a topic of their own.
    registry_apps_topic: str = Field(default=APPS_TOPIC, min_length=1)
    # Run the outbox relay in this process; turn off only where another registry runs it.
    registry_outbox_relay: bool = True
    # NOTIFY wakes the relay at once; the poll only bounds the delay if a notification is lost.
    registry_outbox_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    registry_outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Failed client authentications per minute before 429: per client id, per source address.
    registry_auth_failures_per_client: int = Field(default=10, ge=1)
    registry_auth_failures_per_address: int = Field(default=100, ge=1)
    # Request bodies: OAuth forms (a client assertion fits), admin API JSON.
    registry_form_max_bytes: int = Field(default=8 * 1024, ge=1024)
    registry_json_max_bytes: int = Field(default=64 * 1024, ge=1024)
    # Server limits: connections + requests in flight, idle keep-alive, time to send a head.
    registry_max_concurrency: int = Field(default=1000, ge=10)
    registry_keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    registry_header_read_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # How often a running registry reloads its signing keys (picks up `registry keys rotate`).
    registry_keys_reload_seconds: float = Field(default=30.0, gt=0, le=3600)

    def secret_fields(self) -> tuple[str, ...]:
        """The key-encryption key and the secret pepper must be real secrets in production."""
        return ("registry_key_encryption_key", "registry_secret_pepper")

    def production_secrets(self) -> dict[str, str]:
        """The service's secrets, and the password of the login role migrations set up."""
        found = super().production_secrets()
        if self.registry_app_database_url is not None:
            password = urlsplit(self.registry_app_database_url).password or ""
            found["the password in REGISTRY_APP_DATABASE_URL"] = password
        if self.registry_listen_database_url is not None:
            password = urlsplit(self.registry_listen_database_url).password or ""
            found["the password in REGISTRY_LISTEN_DATABASE_URL"] = password
        return found

    @property
    def issuer(self) -> str:
        """The issuer without a trailing slash, the base of every advertised endpoint."""
        return self.token_issuer.rstrip("/")

    @property
    def auth_failure_limits(self) -> FailureLimits:
        """Failed authentications allowed per minute."""
        return FailureLimits(
            self.registry_auth_failures_per_client, self.registry_auth_failures_per_address
        )

    @property
    def pepper(self) -> bytes:
        """The key of the client-secret digests."""
        return self.registry_secret_pepper.encode()
