"""The issuers file: what is accepted, what is refused with a message naming the problem."""

from pathlib import Path

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from capps_gateway.auth.issuer_keys import KeyFetchError, jwks_uri_of, key_fits, parse_jwks
from capps_gateway.auth.issuers import IssuerConfigError, load_issuers, parse_issuers

REGISTRY = "http://127.0.0.1:8080"
MINIMAL = """
issuers:
  - issuer: https://login.example.com/tenant-a/v2.0/
    audience: api://capps
"""


def parse(text: str) -> list:  # type: ignore[type-arg]
    return parse_issuers(text, registry_issuer=REGISTRY)


def test_a_minimal_entry_gets_safe_defaults() -> None:
    (entry,) = parse(MINIMAL)
    assert entry.issuer == "https://login.example.com/tenant-a/v2.0"
    assert entry.discovery == (
        "https://login.example.com/tenant-a/v2.0/.well-known/openid-configuration"
    )
    assert entry.algorithms == ["RS256"]
    assert entry.leeway_s == 30.0
    rules = entry.rules()
    assert rules.tenant_claim == "tid"
    assert rules.fixed_tenant is None
    assert rules.app_id_claims == ("client_id", "azp", "appid")
    assert rules.permission_claims == ("roles", "scp", "scope")
    assert rules.require_at_jwt


def test_json_works_as_well_and_a_fixed_tenant_replaces_the_claim() -> None:
    (entry,) = parse(
        '{"issuers": [{"issuer": "http://127.0.0.1:9/", "audience": "capps-api",'
        ' "tenant_id": "t-1", "algorithms": ["ES256", "RS256"], "leeway_s": 60,'
        ' "permission_claims": ["scope"], "app_id_claims": ["azp"]}]}'
    )
    rules = entry.rules()
    assert (rules.tenant_claim, rules.fixed_tenant) == (None, "t-1")
    assert rules.algorithms == frozenset({"ES256", "RS256"})
    assert rules.permission_claims == ("scope",)
    assert rules.leeway_s == 60.0


def test_no_issuers_is_a_valid_file() -> None:
    assert parse("issuers: []") == []


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("leeway_s: 61", "issuers.0.leeway_s"),
        ("leeway_s: -1", "issuers.0.leeway_s"),
        ("algorithms: [HS256]", "algorithms not allowed: HS256"),
        ("algorithms: [none]", "algorithms not allowed: none"),
        ("algorithms: []", "issuers.0.algorithms"),
        ("app_id_claims: [sub]", "issuers.0.app_id_claims"),
        ("permission_claims: [groups]", "issuers.0.permission_claims"),
        ("tenant_id: t\n    tenant_claim: tid", "not both"),
        ("refresh_s: 600\n    max_stale_s: 60", "max_stale_s must be at least refresh_s"),
        ("refetch_cooldown_s: 0", "issuers.0.refetch_cooldown_s"),
        ("discovery_url: ftp://x/y", "discovery_url must use https"),
        ("audiences: x", "issuers.0.audiences: Extra inputs"),
    ],
)
def test_invalid_entries_are_refused_naming_the_field(extra: str, problem: str) -> None:
    with pytest.raises(IssuerConfigError, match=problem):
        parse(MINIMAL + "    " + extra + "\n")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("issuers:\n  - issuer: http://idp.example\n    audience: a\n", "must use https"),
        ("issuers:\n  - issuer: idp.example\n    audience: a\n", "absolute URL"),
        ("issuers:\n  - issuer: https://idp.example?x=1\n    audience: a\n", "absolute URL"),
        ("issuers:\n  - audience: a\n", "issuers.0.issuer: Field required"),
        (MINIMAL + MINIMAL.removeprefix("\nissuers:\n"), "configured twice"),
        (
            f"issuers:\n  - issuer: {REGISTRY}/\n    audience: a\n",
            "the registry's own issuer",
        ),
        ("issuers: {", "not valid YAML"),
        ("- a", "file: Input should be"),
    ],
)
def test_invalid_files_are_refused(text: str, problem: str) -> None:
    with pytest.raises(IssuerConfigError, match=problem):
        parse(text)


def test_loading_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "issuers.yaml"
    path.write_text(MINIMAL + "    leeway_s: 120\n")
    with pytest.raises(IssuerConfigError, match=f"{path}: issuers.0.leeway_s"):
        load_issuers(path, registry_issuer=REGISTRY)
    with pytest.raises(IssuerConfigError, match="cannot read"):
        load_issuers(tmp_path / "missing.yaml", registry_issuer=REGISTRY)
    path.write_text(MINIMAL)
    assert len(load_issuers(path, registry_issuer=REGISTRY)) == 1


def test_discovery_must_name_the_same_issuer_and_a_usable_jwks_uri() -> None:
    issuer = "https://idp.example"
    good = {"issuer": issuer + "/", "jwks_uri": "https://keys.example/jwks"}
    assert jwks_uri_of(good, issuer) == "https://keys.example/jwks"
    with pytest.raises(KeyFetchError, match="names issuer"):
        jwks_uri_of({**good, "issuer": "https://evil.example"}, issuer)
    with pytest.raises(KeyFetchError, match="no jwks_uri"):
        jwks_uri_of({"issuer": issuer}, issuer)
    with pytest.raises(KeyFetchError, match="https"):
        jwks_uri_of({**good, "jwks_uri": "http://keys.example/jwks"}, issuer)
    with pytest.raises(KeyFetchError, match="not a JSON object"):
        jwks_uri_of([], issuer)


def test_keys_fit_only_their_own_algorithm_family() -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "e"})
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "o"})
    pinned = RSAKey.generate_key(2048, parameters={"kid": "p", "alg": "RS256"})
    named: dict[str, RSAKey | ECKey | OKPKey] = {"rsa": rsa, "ec": ec, "ed": ed, "pinned": pinned}
    fits = {
        (kid, alg)
        for kid, key in named.items()
        for alg in ("RS256", "PS256", "ES256", "ES384", "EdDSA")
        if key_fits(key, alg)
    }
    assert fits == {
        ("rsa", "RS256"),
        ("rsa", "PS256"),
        ("ec", "ES256"),
        ("ed", "EdDSA"),
        ("pinned", "RS256"),
    }


def test_the_jwks_keeps_public_signing_keys_of_allowed_algorithms_only() -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r", "use": "sig"})
    enc = RSAKey.generate_key(2048, parameters={"kid": "enc", "use": "enc"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "e"})
    document = {
        "keys": [
            rsa.as_dict(private=False),
            enc.as_dict(private=False),
            ec.as_dict(private=False),
            {**RSAKey.generate_key(2048, parameters={"kid": "priv"}).as_dict(private=True)},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "broken", "n": "x"},
            {"kty": "RSA"},
            "junk",
        ]
    }
    assert set(parse_jwks(document, frozenset({"RS256"}))) == {"r"}
    assert set(parse_jwks(document, frozenset({"RS256", "ES256"}))) == {"r", "e"}
    with pytest.raises(KeyFetchError, match="no key usable"):
        parse_jwks(document, frozenset({"EdDSA"}))
    with pytest.raises(KeyFetchError, match="no 'keys' list"):
        parse_jwks({"keys": "x"}, frozenset({"RS256"}))


def test_the_documented_example_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[3] / "config" / "issuers.example.yaml"
    entries = load_issuers(example, registry_issuer=REGISTRY)
    assert [entry.rules().fixed_tenant for entry in entries] == ["contoso-tenant-id", None]
    assert entries[0].rules().require_at_jwt is False
