"""Which external identity providers the gateway trusts, read from one YAML or JSON file.

Each entry names a provider by its issuer URL (OpenID discovery finds its keys) and says how its
access tokens are checked and mapped. A wrong file stops the gateway at start with a message
naming the entry and field: trust configuration is never half applied.
"""

from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from capps_events import normalise_issuer
from capps_gateway.auth.claim_mapping import (
    SIGNING_ALGORITHMS,
    AppIdClaim,
    PermissionClaim,
    TokenRules,
)

MAX_ISSUERS = 100
MAX_LEEWAY_S = 60.0
MAX_FILE_BYTES = 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class IssuerConfigError(Exception):
    """The issuers file is missing, unreadable or invalid; the message says where."""


def check_url(url: str, what: str) -> str:
    """An absolute https URL (plain http only on the loopback, for development and tests)."""
    parts = urlsplit(url)
    if not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{what} must be an absolute URL without query or fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return url
    raise ValueError(f"{what} must use https (http only on the loopback)")


class IssuerConfig(BaseModel):
    """One trusted external identity provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(max_length=500)
    """Its issuer URL, as in its tokens' `iss` and its discovery document."""
    audience: Identifier
    """The `aud` its tokens must carry for this platform's API."""
    algorithms: list[str] = Field(default=["RS256"], min_length=1)
    leeway_s: float = Field(default=30.0, ge=0.0, le=MAX_LEEWAY_S)
    app_id_claims: list[AppIdClaim] = Field(default=["client_id", "azp", "appid"], min_length=1)
    tenant_claim: Identifier | None = None
    """The claim naming the tenant (`tid` when neither this nor `tenant_id` is given)."""
    tenant_id: Identifier | None = None
    """A fixed tenant for every token of this issuer."""
    permission_claims: list[PermissionClaim] = ["roles", "scp", "scope"]
    """Read in order, the first present wins; empty: tokens do not narrow the app's permissions."""
    require_at_jwt: bool = True
    """Refuse tokens not typed `at+jwt` (RFC 9068); some providers type theirs `JWT`."""
    discovery_url: str | None = Field(default=None, max_length=1000)
    """Default: the issuer + `/.well-known/openid-configuration`."""
    refresh_s: float = Field(default=300.0, gt=0.0, le=86_400.0)
    """How often discovery and keys are fetched again."""
    refetch_cooldown_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    """At most one refetch per this interval for tokens naming an unknown key."""
    max_stale_s: float = Field(default=3600.0, gt=0.0, le=7 * 86_400.0)
    """While fetching fails, the last good keys serve this long after they were fetched."""

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        return normalise_issuer(check_url(value, "issuer"))

    @field_validator("discovery_url")
    @classmethod
    def _discovery_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, "discovery_url")

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - SIGNING_ALGORITHMS)
        if unknown:
            allowed = ", ".join(sorted(SIGNING_ALGORITHMS))
            raise ValueError(f"algorithms not allowed: {', '.join(unknown)} (allowed: {allowed})")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.tenant_claim is not None and self.tenant_id is not None:
            raise ValueError("give tenant_claim or tenant_id, not both")
        if self.max_stale_s < self.refresh_s:
            raise ValueError("max_stale_s must be at least refresh_s")
        return self

    @property
    def discovery(self) -> str:
        """Where the OpenID discovery document is fetched."""
        return self.discovery_url or self.issuer + "/.well-known/openid-configuration"

    def rules(self) -> TokenRules:
        """The token checks and claim mapping of this issuer."""
        return TokenRules(
            issuer=self.issuer,
            audience=self.audience,
            algorithms=frozenset(self.algorithms),
            leeway_s=self.leeway_s,
            app_id_claims=tuple(dict.fromkeys(self.app_id_claims)),
            tenant_claim=None if self.tenant_id is not None else (self.tenant_claim or "tid"),
            fixed_tenant=self.tenant_id,
            permission_claims=tuple(dict.fromkeys(self.permission_claims)),
            require_at_jwt=self.require_at_jwt,
        )


class IssuersFile(BaseModel):
    """The whole file: `issuers: [...]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuers: list[IssuerConfig] = Field(max_length=MAX_ISSUERS)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        seen: set[str] = set()
        for entry in self.issuers:
            if entry.issuer in seen:
                raise ValueError(f"issuer {entry.issuer} is configured twice")
            seen.add(entry.issuer)
        return self


def parse_issuers(text: str, *, registry_issuer: str) -> list[IssuerConfig]:
    """The issuers of a YAML or JSON document; IssuerConfigError naming what is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise IssuerConfigError(f"not valid YAML or JSON: {exc}") from None
    try:
        parsed = IssuersFile.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()
        )
        raise IssuerConfigError(problems) from None
    for entry in parsed.issuers:
        # The registry's own tokens are checked against the registry's JWKS, never a provider's.
        if entry.issuer == normalise_issuer(registry_issuer):
            raise IssuerConfigError(f"issuer {entry.issuer} is the registry's own issuer")
    return parsed.issuers


def load_issuers(path: Path, *, registry_issuer: str) -> list[IssuerConfig]:
    """The issuers configured in the file at `path`."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise IssuerConfigError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise IssuerConfigError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IssuerConfigError(f"{path} is not UTF-8") from None
    try:
        return parse_issuers(text, registry_issuer=registry_issuer)
    except IssuerConfigError as exc:
        raise IssuerConfigError(f"{path}: {exc}") from None
