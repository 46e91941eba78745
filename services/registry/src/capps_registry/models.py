"""Records of the registry's domain, shared by the OAuth side and the admin API."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

ClientKind = Literal["admin", "app"]
Channel = Literal["api", "page", "cli"]
"""How an admin acts: the admin API, the page, or the platform's CLI (recorded in the trail)."""
DEFAULT_PER_MINUTE = 100
DEFAULT_PER_HOUR = 1500


@dataclass(frozen=True, slots=True)
class Client:
    """An OAuth client: a tenant's admin client or one of its connected apps."""

    id: str
    tenant_id: str
    kind: ClientKind
    name: str
    description: str
    enabled: bool
    permissions: list[str]
    per_minute: int
    per_hour: int
    created_at: datetime
    updated_at: datetime
    version: int
    tokens_valid_after: datetime
    """Tokens with an `iat` before this are refused; whole seconds, moved on by a disable."""
    issuer: str | None = None
    """For an app of an external identity provider, its issuer URL (the app id is its client id)."""

    @classmethod
    def from_row(cls, row: Any) -> "Client":
        """Build from a row of `oauth_clients`."""
        return cls(
            id=row["id"],
            tenant_id=row["tenant_id"],
            kind=row["kind"],
            name=row["name"],
            description=row["description"],
            enabled=row["enabled"],
            permissions=list(row["permissions"]),
            per_minute=row["rate_limit_per_minute"],
            per_hour=row["rate_limit_per_hour"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            version=row["version"],
            tokens_valid_after=row["tokens_valid_after"],
            issuer=row["issuer"],
        )


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What an admin may see of a client secret: never the secret itself."""

    id: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    hint: str


def secrets_expire_at(expiries: Iterable[datetime | None]) -> datetime | None:
    """When a client's last secret stops working: None if one never expires, or it has none
    (an external app, or one that signs assertions with its keys)."""
    ends = list(expiries)
    if not ends or any(end is None for end in ends):
        return None
    return max(end for end in ends if end is not None)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acts: a client in one tenant (always taken from its token's `tid`), for one request."""

    tenant_id: str
    client_id: str
    roles: tuple[str, ...] = ()
    request_id: str | None = None
    """Recorded with each audit event, so an event can be matched with the request's logs."""
    via: Channel = "api"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One admin action as recorded: who, what, when, and the state before and after."""

    id: int
    tenant_id: str
    app_id: str | None
    actor: str
    action: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    via: Channel | None = None
    """None for events recorded before the trail kept it."""
