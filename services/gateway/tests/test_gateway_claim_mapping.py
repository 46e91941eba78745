"""Claim mapping of external providers' tokens: header rules, issuer, audience, times, mapping."""

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from capps_events import AppState, RateLimit
from capps_gateway.access import Verdict, decide
from capps_gateway.auth.claim_mapping import (
    TokenRules,
    check_external_header,
    map_external_claims,
    permissions_of,
)
from capps_gateway.auth.claims import InvalidTokenError

NOW = 1_790_000_000.0
ISSUER = "https://idp.example/tenant"
ALL = frozenset({"Alert.Read.All", "Machine.Read.All", "Machine.Isolate"})
RULES = TokenRules(
    issuer=ISSUER,
    audience="api://capps",
    algorithms=frozenset({"RS256", "ES256"}),
    leeway_s=30.0,
    app_id_claims=("client_id", "azp", "appid"),
    tenant_claim="tid",
    fixed_tenant=None,
    permission_claims=("roles", "scp", "scope"),
    require_at_jwt=True,
)


def rules(**changes: Any) -> TokenRules:
    return dataclasses.replace(RULES, **changes)


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "api://capps",
        "sub": "sp-object-1",
        "client_id": "partner-siem",
        "tid": "tenant-1",
        "roles": ["Alert.Read.All"],
        "jti": "j1",
        "iat": NOW - 10,
        "exp": NOW + 600,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def mapped(token_claims: dict[str, Any], token_rules: TokenRules = RULES) -> Any:
    return map_external_claims(token_claims, token_rules, now=NOW, all_permissions=ALL)


def test_a_well_formed_token_maps_to_its_app_tenant_permissions_and_issuer() -> None:
    principal = mapped(claims())
    assert principal.app_id == "partner-siem"
    assert principal.tenant_id == "tenant-1"
    assert principal.roles == frozenset({"Alert.Read.All"})
    assert principal.issuer == ISSUER
    assert principal.subject == "sp-object-1"
    assert principal.issued_at == NOW - 10


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({"client_id": "a", "azp": "b", "appid": "c"}, "a"),
        ({"client_id": None, "azp": "b", "appid": "c"}, "b"),
        ({"client_id": None, "appid": "c"}, "c"),
    ],
)
def test_the_app_is_the_first_configured_claim_present(
    present: dict[str, Any], expected: str
) -> None:
    assert mapped(claims(**present)).app_id == expected


def test_the_app_claims_and_their_order_come_from_the_issuer() -> None:
    only_azp = rules(app_id_claims=("azp",))
    assert mapped(claims(azp="from-azp"), only_azp).app_id == "from-azp"
    with pytest.raises(InvalidTokenError, match="names no app"):
        mapped(claims(), only_azp)


@pytest.mark.parametrize("bad", ["", 42, ["a"], "x" * 201])
def test_an_unusable_app_id_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidTokenError, match="client_id"):
        mapped(claims(client_id=bad))


def test_a_fixed_tenant_ignores_any_tid_and_a_claimed_tenant_is_required() -> None:
    fixed = rules(tenant_claim=None, fixed_tenant="tenant-fixed")
    assert mapped(claims(tid="tenant-other"), fixed).tenant_id == "tenant-fixed"
    assert mapped(claims(tid=None), fixed).tenant_id == "tenant-fixed"
    with pytest.raises(InvalidTokenError, match="tid is missing"):
        mapped(claims(tid=None))


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({"roles": ["Alert.Read.All", "Machine.Isolate"]}, {"Alert.Read.All", "Machine.Isolate"}),
        (
            {"roles": None, "scp": "Alert.Read.All Machine.Read.All"},
            {"Alert.Read.All", "Machine.Read.All"},
        ),
        (
            {"roles": None, "scope": "Machine.Read.All  Alert.Read.All"},
            {"Alert.Read.All", "Machine.Read.All"},
        ),
        ({"roles": None}, set()),
        ({"roles": [], "scope": "Alert.Read.All"}, set()),
    ],
)
def test_permissions_come_from_the_first_claim_present(
    present: dict[str, Any], expected: set[str]
) -> None:
    assert mapped(claims(**present)).roles == frozenset(expected)


def test_no_permission_claim_configured_means_the_token_does_not_narrow() -> None:
    assert permissions_of(claims(), ()) is None
    assert mapped(claims(roles=None), rules(permission_claims=())).roles == ALL


@pytest.mark.parametrize("bad", [42, [1, 2], {"a": 1}, ["x"] * 201])
def test_malformed_permissions_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidTokenError, match="roles"):
        mapped(claims(roles=bad))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "https://idp.example/other"}, "wrong issuer"),
        ({"iss": None}, "wrong issuer"),
        ({"aud": "api://someone-else"}, "wrong audience"),
        ({"aud": ["api://a", "api://b"]}, "wrong audience"),
        ({"aud": None}, "wrong audience"),
        ({"exp": NOW - 31}, "expired"),
        ({"exp": None}, "exp must be a number"),
        ({"nbf": NOW + 31}, "not valid yet"),
        ({"iat": None}, "iat must be a number"),
        ({"iat": NOW + 31}, "issued in the future"),
        ({"iat": True}, "iat must be a number"),
    ],
)
def test_wrong_issuer_audience_and_times_are_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        mapped(claims(**changes))


def test_the_leeway_is_the_issuers_own() -> None:
    assert mapped(claims(exp=NOW - 29)).app_id == "partner-siem"
    with pytest.raises(InvalidTokenError, match="expired"):
        mapped(claims(exp=NOW - 29), rules(leeway_s=0.0))


def test_an_issuer_with_a_trailing_slash_is_the_same_issuer() -> None:
    assert mapped(claims(iss=ISSUER + "/")).issuer == ISSUER


def test_an_audience_list_naming_ours_is_accepted() -> None:
    assert mapped(claims(aud=["api://other", "api://capps"])).app_id == "partner-siem"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "RS512", "typ": "at+jwt", "kid": "k"}, "algorithm not allowed"),
        ({"alg": "HS256", "typ": "at+jwt", "kid": "k"}, "algorithm not allowed"),
        ({"alg": "none", "typ": "at+jwt", "kid": "k"}, "algorithm not allowed"),
        ({"typ": "at+jwt", "kid": "k"}, "algorithm not allowed"),
        ({"alg": "RS256", "typ": "JWT", "kid": "k"}, "type must be at\\+jwt"),
        ({"alg": "RS256", "kid": "k"}, "type must be at\\+jwt"),
        ({"alg": "RS256", "typ": "at+jwt"}, "missing key id"),
        ({"alg": "RS256", "typ": "at+jwt", "kid": "k", "crit": ["x"]}, "critical"),
    ],
)
def test_headers_outside_the_issuers_rules_are_refused(header: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        check_external_header(header, RULES)


def test_allowed_headers_name_their_algorithm() -> None:
    assert check_external_header({"alg": "ES256", "typ": "at+jwt", "kid": "k"}, RULES) == "ES256"
    plain = rules(require_at_jwt=False)
    assert check_external_header({"alg": "RS256", "typ": "JWT", "kid": "k"}, plain) == "RS256"
    assert check_external_header({"alg": "RS256", "kid": "k"}, plain) == "RS256"
    with pytest.raises(InvalidTokenError, match="type"):
        check_external_header({"alg": "RS256", "typ": "id+jwt", "kid": "k"}, plain)


def _state(issuer: str | None) -> AppState:
    return AppState(
        app_id="partner-siem",
        tenant_id="tenant-1",
        enabled=True,
        permissions=["Alert.Read.All", "Machine.Read.All"],
        rate_limit=RateLimit(per_minute=100, per_hour=1500),
        tokens_valid_after=datetime(2026, 1, 1, tzinfo=UTC),
        version=1,
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        issuer=issuer,
    )


def test_an_app_answers_only_to_the_issuer_it_was_registered_with() -> None:
    external = mapped(claims(roles=["Alert.Read.All", "Machine.Read.All"]))
    assert decide(_state(ISSUER), external, "Alert.Read.All") is Verdict.ALLOW
    assert decide(_state("https://idp.example/other"), external, None) is Verdict.UNKNOWN_APP
    # The registry's own app with the same id is not the external client's.
    assert decide(_state(None), external, None) is Verdict.UNKNOWN_APP
    registry_token = dataclasses.replace(external, issuer=None)
    assert decide(_state(ISSUER), registry_token, None) is Verdict.UNKNOWN_APP


def test_the_registry_decides_and_the_token_only_narrows() -> None:
    # The token asks for Machine.Isolate, the app was never granted it: refused.
    wide = mapped(claims(roles=["Alert.Read.All", "Machine.Isolate"]))
    assert decide(_state(ISSUER), wide, "Machine.Isolate") is Verdict.INSUFFICIENT_SCOPE
    # The app holds Machine.Read.All, the token does not carry it: refused.
    assert decide(_state(ISSUER), wide, "Machine.Read.All") is Verdict.INSUFFICIENT_SCOPE
    # A token that does not narrow gets exactly the app's permissions.
    unnarrowed = mapped(claims(roles=None), rules(permission_claims=()))
    assert decide(_state(ISSUER), unnarrowed, "Machine.Read.All") is Verdict.ALLOW
    assert decide(_state(ISSUER), unnarrowed, "Machine.Isolate") is Verdict.INSUFFICIENT_SCOPE
