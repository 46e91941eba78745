"""Request and response bodies of an app's public key set (RFC 7517 JWKS)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from capps_registry.oauth.client_keys import MAX_KEYS, checked_key_set


class JwksIn(BaseModel):
    """`PUT /v1/apps/{id}/jwks`: the app's public signature keys, each with a unique kid."""

    model_config = ConfigDict(extra="forbid")

    keys: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_KEYS)

    @field_validator("keys")
    @classmethod
    def _public_signature_keys(cls, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # KeySetError is a ValueError: pydantic turns it into a 422 that names the key.
        return checked_key_set(keys)


class JwksOut(BaseModel):
    """The app's registered public keys; empty when it authenticates with secrets only."""

    keys: list[dict[str, Any]]
