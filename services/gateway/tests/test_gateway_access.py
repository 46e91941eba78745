"""The access decision: app state + token claims + route permission -> verdict."""

from datetime import UTC, datetime

import pytest

from capps_events import AppState, RateLimit, token_predates
from capps_gateway.access import Verdict, decide
from capps_gateway.auth import Principal

ISSUED_AT = 1_760_000_000.0
VALID_AFTER = datetime.fromtimestamp(ISSUED_AT - 3600, UTC)


def state(**overrides: object) -> AppState:
    fields: dict[str, object] = {
        "app_id": "app-1",
        "tenant_id": "tenant-1",
        "enabled": True,
        "permissions": ["Alert.Read.All", "Machine.Read.All"],
        "rate_limit": RateLimit(per_minute=100, per_hour=1500),
        "tokens_valid_after": VALID_AFTER,
        "version": 3,
        "updated_at": VALID_AFTER,
    }
    fields.update(overrides)
    return AppState(**fields)  # type: ignore[arg-type]


def principal(
    roles: tuple[str, ...] = ("Alert.Read.All", "Machine.Read.All"),
    *,
    tenant_id: str = "tenant-1",
    issued_at: float = ISSUED_AT,
) -> Principal:
    return Principal(
        app_id="app-1",
        tenant_id=tenant_id,
        subject="app-1",
        roles=frozenset(roles),
        token_id="jti-1",
        issued_at=issued_at,
        expires_at=issued_at + 600,
    )


def test_known_enabled_app_with_the_permission_is_allowed() -> None:
    assert decide(state(), principal(), "Alert.Read.All") is Verdict.ALLOW


def test_no_route_leaves_the_answer_to_the_caller() -> None:
    assert decide(state(), principal(), None) is Verdict.ALLOW


def test_unknown_or_deleted_app_is_unknown() -> None:
    assert decide(None, principal(), "Alert.Read.All") is Verdict.UNKNOWN_APP


def test_app_of_another_tenant_is_unknown() -> None:
    verdict = decide(state(), principal(tenant_id="tenant-2"), "Alert.Read.All")
    assert verdict is Verdict.UNKNOWN_APP


def test_disabled_app_is_disabled_even_with_a_token_issued_before_it_was() -> None:
    disabled_now = datetime.fromtimestamp(ISSUED_AT + 60, UTC)
    verdict = decide(
        state(enabled=False, tokens_valid_after=disabled_now), principal(), "Alert.Read.All"
    )
    assert verdict is Verdict.APP_DISABLED


def test_token_issued_before_tokens_valid_after_is_revoked() -> None:
    later = datetime.fromtimestamp(ISSUED_AT + 60, UTC)
    verdict = decide(state(tokens_valid_after=later), principal(), "Alert.Read.All")
    assert verdict is Verdict.TOKEN_REVOKED


def test_permission_revoked_from_the_app_is_refused_with_an_old_token() -> None:
    revoked = state(permissions=["Machine.Read.All"])
    assert decide(revoked, principal(), "Alert.Read.All") is Verdict.INSUFFICIENT_SCOPE
    assert decide(revoked, principal(), "Machine.Read.All") is Verdict.ALLOW


def test_permission_granted_to_the_app_needs_a_new_token() -> None:
    granted = state(permissions=["Alert.Read.All", "Machine.Read.All", "Machine.Isolate"])
    assert decide(granted, principal(), "Machine.Isolate") is Verdict.INSUFFICIENT_SCOPE
    with_role = principal(("Machine.Isolate",))
    assert decide(granted, with_role, "Machine.Isolate") is Verdict.ALLOW


@pytest.mark.parametrize(
    ("issued_at", "valid_after", "revoked"),
    [
        (100.0, 101.5, True),
        # A whole-second iat in the second of the cut-off is revoked (the registry's rule): a
        # token issued just before a disable must not survive the re-enable.
        (101, 101.5, True),
        (102, 101.5, False),
        (101, 101.0, False),
        (101.2, 101.5, True),
        (101.7, 101.5, False),
        ("101", 100.0, True),
        (True, 100.0, True),
        (None, 100.0, True),
    ],
)
def test_the_shared_rule_for_iat_against_tokens_valid_after(
    issued_at: object, valid_after: float, *, revoked: bool
) -> None:
    cutoff = datetime.fromtimestamp(valid_after, UTC)
    assert token_predates(issued_at, cutoff) is revoked
