"""Pure access decision for a verified token: app state + token claims + route -> verdict."""

import enum

from capps_events import AppState, token_predates
from capps_gateway.auth import Principal


class Verdict(enum.Enum):
    """What the gateway does with a call whose token signature and claims are valid."""

    ALLOW = "allow"
    """The app may go on; the caller still answers 404 when no route matched."""
    UNKNOWN_APP = "unknown_app"
    """401, no usage event: no such app (never seen, deleted, of another tenant or issuer)."""
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - a verdict name, not a secret
    """401, no usage event: the token was issued before the app's tokens_valid_after."""
    APP_DISABLED = "app_disabled"
    """403, counted: the app exists but its tenant's admin disabled it."""
    INSUFFICIENT_SCOPE = "insufficient_scope"
    """403, counted: the route's permission is missing from the token or from the app now."""


def decide(state: AppState | None, principal: Principal, permission: str | None) -> Verdict:
    """The verdict for a call by `principal` to a route needing `permission` (None: no route).

    Order matters: a disabled app answers 403 app_disabled even with an old token (disabling
    also moves tokens_valid_after), and only once re-enabled are its old tokens 401.
    A permission must be both in the token and in the app's live state: revoking one takes
    effect at once, while granting one takes a new token, as usual with OAuth scopes.
    """
    if (
        state is None
        or state.tenant_id != principal.tenant_id
        # An app answers only to the issuer it was registered with: the same client id at
        # another provider (or at the registry) is another party.
        or state.issuer != principal.issuer
    ):
        return Verdict.UNKNOWN_APP
    if not state.enabled:
        return Verdict.APP_DISABLED
    if token_predates(principal.issued_at, state.tokens_valid_after):
        return Verdict.TOKEN_REVOKED
    if permission is not None and (
        permission not in principal.roles or permission not in state.permissions
    ):
        return Verdict.INSUFFICIENT_SCOPE
    return Verdict.ALLOW
