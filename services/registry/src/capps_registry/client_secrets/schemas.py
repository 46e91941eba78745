"""Request and response bodies of the secrets API."""

from datetime import UTC, datetime, timedelta
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from capps_registry.apps.schemas import SecretOut

# A secret may be made to expire; beyond two years an expiry is no real bound.
MAX_LIFETIME = timedelta(days=731)


class SecretCreate(BaseModel):
    """`POST …/secrets`: optionally when the new secret stops working."""

    model_config = ConfigDict(extra="forbid")

    expires_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _expiry_in_range(self) -> Self:
        if self.expires_at is not None:
            now = datetime.now(UTC)
            if self.expires_at <= now:
                raise ValueError("expires_at must be in the future")
            if self.expires_at > now + MAX_LIFETIME:
                raise ValueError("expires_at must be within two years")
        return self


class SecretCreated(SecretOut):
    """A new secret: its metadata and the secret itself, shown this once."""

    client_secret: str


class AdminClientOut(BaseModel):
    """The tenant's admin client and its secrets' metadata."""

    client_id: str
    secrets: list[SecretOut]
