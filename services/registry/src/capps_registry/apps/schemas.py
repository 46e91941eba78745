"""Request and response bodies of the apps API; validation lives here, not in handlers."""

from datetime import date, datetime
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from capps_events import normalise_issuer
from capps_registry.app_keys.schemas import JwksIn
from capps_registry.models import DEFAULT_PER_HOUR, DEFAULT_PER_MINUTE, Client
from capps_registry.oauth.credentials import EXTERNAL_CLIENT_ID_PATTERN
from capps_registry.text import refuse_bidi_controls

# Generous enough for first-party and load-testing apps, small enough to stay a sane integer.
MAX_RATE = 1_000_000_000
MAX_PAGE = 200
DEFAULT_PAGE = 50

# No control characters in names (C0 and C1); descriptions may hold tabs and line breaks.
# Neither may hold bidi controls, which make text display other than it reads.
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$"
    ),
    AfterValidator(refuse_bidi_controls),
]
Description = Annotated[
    str,
    StringConstraints(max_length=2000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"),
    AfterValidator(refuse_bidi_controls),
]
AppSort = Literal["name", "last_seen", "requests"]
PermissionName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# An external client id becomes the app id: in URLs, Redis keys and Kafka keys, so a safe
# alphabet (Entra ID's GUIDs, Okta's and Keycloak's ids, oidc-provider's all fit).
ExternalClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=EXTERNAL_CLIENT_ID_PATTERN)
]
ExternalIssuer = Annotated[
    str,
    StringConstraints(max_length=500, pattern=r"^https?://[^\s?#]+$"),
    AfterValidator(normalise_issuer),
]


class RateLimit(BaseModel):
    """Calls an app may make per minute and per hour."""

    model_config = ConfigDict(extra="forbid")

    per_minute: int = Field(default=DEFAULT_PER_MINUTE, gt=0, le=MAX_RATE)
    per_hour: int = Field(default=DEFAULT_PER_HOUR, gt=0, le=MAX_RATE)

    @model_validator(mode="after")
    def _hour_covers_minute(self) -> Self:
        if self.per_hour < self.per_minute:
            raise ValueError("per_hour must be at least per_minute")
        return self


class ExternalIdentity(BaseModel):
    """The external identity provider of an app: its issuer URL and the app's client id there."""

    model_config = ConfigDict(extra="forbid")

    issuer: ExternalIssuer
    client_id: ExternalClientId


def external_identity(client: Client) -> ExternalIdentity | None:
    """The provider identity of an external app, None for an app of the registry's tokens."""
    if client.issuer is None:
        return None
    return ExternalIdentity(issuer=client.issuer, client_id=client.id)


class RateLimitPatch(BaseModel):
    """A change of rate limit: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    per_minute: int | None = Field(default=None, gt=0, le=MAX_RATE)
    per_hour: int | None = Field(default=None, gt=0, le=MAX_RATE)

    @model_validator(mode="after")
    def _something_given(self) -> Self:
        if self.per_minute is None and self.per_hour is None:
            raise ValueError("give per_minute, per_hour or both")
        return self


class AppCreate(BaseModel):
    """`POST /v1/apps`; with `external`, the app is that provider's client (no secret here).

    With `jwks`, the app authenticates with assertions signed by those keys (no secret).
    """

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description = ""
    permissions: list[PermissionName] = Field(max_length=100)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    external: ExternalIdentity | None = None
    jwks: JwksIn | None = None

    @model_validator(mode="after")
    def _one_kind_of_credential(self) -> Self:
        if self.external is not None and self.jwks is not None:
            raise ValueError("an app of an external provider has no keys here: give one of them")
        return self


class AppUpdate(BaseModel):
    """`PATCH /v1/apps/{id}`: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    enabled: bool | None = None
    permissions: list[PermissionName] | None = Field(default=None, max_length=100)
    rate_limit: RateLimitPatch | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        # Absent means "leave as is"; an explicit null would be ambiguous, so it is refused.
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"fields may be omitted but not null: {', '.join(nulls)}")
        return self


class DayRequests(BaseModel):
    """Requests on one UTC day."""

    date: date
    requests: int


class SecretOut(BaseModel):
    """A secret as an admin sees it: metadata and the last four characters."""

    id: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    hint: str


class AppOut(BaseModel):
    """An app with its usage stats."""

    id: str
    name: str
    description: str
    enabled: bool
    version: int
    """Grows with every change of the app's configuration; its ETag, for If-Match."""
    permissions: list[str]
    rate_limit: RateLimit
    created_at: datetime
    updated_at: datetime
    last_seen: datetime | None
    requests_24h: int
    trend_30d: list[DayRequests]
    external: ExternalIdentity | None = None
    """Set for an app of an external identity provider."""
    secrets_expire_at: datetime | None = None
    """When the app's last secret stops working (then it gets no token); null when one never
    expires, or it has none."""


class AppCreated(AppOut):
    """A new app and its first secret, shown this once (none for an external or a keyed app)."""

    client_secret: str | None


class AppDetail(AppOut):
    """One app with its secrets' metadata."""

    secrets: list[SecretOut]


class AppList(BaseModel):
    """One page of the tenant's apps; pass `next_cursor` back as `cursor` for the next."""

    apps: list[AppOut]
    next_cursor: str | None


class RouteOut(BaseModel):
    """One upstream route a permission opens."""

    method: str
    template: str


class PermissionOut(BaseModel):
    """One grantable permission and the routes it opens."""

    name: str
    description: str
    routes: list[RouteOut]


class PermissionList(BaseModel):
    """The permission catalog."""

    permissions: list[PermissionOut]
