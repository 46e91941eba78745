"""Tokens of external identity providers through a real gateway process.

Two kinds of provider: panva's `oidc-provider` (OpenID Certified, run on Node.js from
`oidc/`) issuing client-credentials JWT access tokens for a resource indicator, and providers
of the test's own (a discovery document and a JWKS served here) for the failure cases:
discovery down, unknown kids, keys of another issuer, wrong audience, algorithm or times.
"""

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from tests.integration.gateway.conftest import (
    AppStates,
    EventLog,
    Gateway,
    StartGateway,
    _serve,
)
from tests.integration.gateway.oidc_provider import AUDIENCE, OidcProvider, running_provider

pytestmark = pytest.mark.integration

EXT_AUDIENCE = AUDIENCE
OIDC_TENANT = f"tenant-oidc-{uuid.uuid4().hex[:8]}"
OWN_TENANT = f"tenant-own-{uuid.uuid4().hex[:8]}"
DEADLINE_S = 30.0
# The flaky issuer's keys serve this long after their last fetch when discovery is down.
FLAKY_MAX_STALE_S = 4.0


@pytest.fixture(scope="module")
async def oidc(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    """panva's oidc-provider with two clients, one never registered as an app."""
    client_ids = [f"partner-siem-{uuid.uuid4().hex[:8]}", f"partner-other-{uuid.uuid4().hex[:8]}"]
    log_path = tmp_path_factory.mktemp("oidc") / "oidc-provider.log"
    async with running_provider(client_ids, log_path) as provider:
        yield provider


@dataclass
class OwnIssuer:
    """A provider of the test's own: discovery + JWKS it can take down, rotate, and count."""

    name: str
    base: str = ""
    keys: dict[str, RSAKey | ECKey] = field(default_factory=dict)
    up: bool = True
    jwks_hits: int = 0

    @property
    def issuer(self) -> str:
        return f"{self.base}/{self.name}"

    def add_key(self, kind: str = "RSA") -> str:
        kid = f"{self.name}-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = (
            RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})
            if kind == "RSA"
            else ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"})
        )
        return kid

    def token(
        self,
        app_id: str,
        *,
        kid: str | None = None,
        key: Any = None,
        alg: str = "RS256",
        typ: str = "at+jwt",
        **claims: Any,
    ) -> str:
        kid = kid or next(iter(self.keys))
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": EXT_AUDIENCE,
            "sub": app_id,
            "azp": app_id,
            "tid": OWN_TENANT,
            "roles": ["Alert.Read.All"],
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        header = {"alg": alg, "typ": typ, "kid": kid}
        return jwt.encode(header, payload, key or self.keys[kid], algorithms=[alg])


@pytest.fixture(scope="module")
async def own() -> AsyncIterator[dict[str, OwnIssuer]]:
    """The test's own issuers, all served by one local server under their own paths."""
    issuers = {name: OwnIssuer(name) for name in ("main", "other", "quiet", "flaky")}

    async def discovery(request: web.Request) -> web.Response:
        found = issuers.get(request.match_info["name"])
        if found is None or not found.up:
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"issuer": found.issuer, "jwks_uri": found.issuer + "/jwks"})

    async def jwks(request: web.Request) -> web.Response:
        found = issuers.get(request.match_info["name"])
        if found is None or not found.up:
            return web.json_response({"error": "down"}, status=503)
        found.jwks_hits += 1
        return web.json_response({"keys": [k.as_dict(private=False) for k in found.keys.values()]})

    app = web.Application()
    app.router.add_get("/{name}/.well-known/openid-configuration", discovery)
    app.router.add_get("/{name}/jwks", jwks)
    async with _serve(app) as base:
        for found in issuers.values():
            found.base = base
            found.add_key()
        issuers["main"].add_key("EC")
        yield issuers


@pytest.fixture(scope="module")
async def ext_gateway(
    start_gateway: StartGateway,
    demo_api_url: str,
    oidc: OidcProvider,
    own: dict[str, OwnIssuer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    """A gateway trusting oidc-provider and the test's own issuers, each with its own rules."""
    entries = [
        {
            "issuer": oidc.issuer,
            "audience": EXT_AUDIENCE,
            "tenant_id": OIDC_TENANT,
            "permission_claims": ["scope"],
        },
        {
            "issuer": own["main"].issuer,
            "audience": EXT_AUDIENCE,
            "algorithms": ["RS256", "ES256"],
            "leeway_s": 5,
            "refetch_cooldown_s": 1,
        },
        {"issuer": own["other"].issuer, "audience": EXT_AUDIENCE},
        {"issuer": own["quiet"].issuer, "audience": EXT_AUDIENCE, "refetch_cooldown_s": 3600},
        {
            "issuer": own["flaky"].issuer,
            "audience": EXT_AUDIENCE,
            "refresh_s": 0.5,
            "refetch_cooldown_s": 1,
            "max_stale_s": FLAKY_MAX_STALE_S,
        },
    ]
    path = tmp_path_factory.mktemp("issuers") / "issuers.json"
    path.write_bytes(orjson.dumps({"issuers": entries}))
    return await start_gateway(demo_api_url, extra_env={"GATEWAY_ISSUERS_FILE": str(path)})


async def call(
    http: aiohttp.ClientSession, gateway: Gateway, path: str, token: str, method: str = "GET"
) -> tuple[int, dict[str, Any], str]:
    """(status, JSON body, request id) of one call through the gateway."""
    request_id = str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}", "X-Request-Id": request_id}
    async with http.request(method, gateway.url + path, headers=headers) as response:
        body = await response.read()
        return response.status, orjson.loads(body) if body else {}, request_id


async def eventually(
    http: aiohttp.ClientSession, gateway: Gateway, path: str, token: str, status: int
) -> dict[str, Any]:
    """Call until the answer has `status` (state and keys propagate asynchronously)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        got, body, _ = await call(http, gateway, path, token)
        if got == status:
            return body
        assert time.monotonic() < deadline, f"still {got} {body}, never {status}"
        await asyncio.sleep(0.1)


def error_code(body: dict[str, Any]) -> str:
    code: str = body["error"]["code"]
    return code


async def test_oidc_provider_tokens_act_for_their_registered_app_and_count(
    http: aiohttp.ClientSession,
    ext_gateway: Gateway,
    oidc: OidcProvider,
    apps: AppStates,
    event_log: EventLog,
) -> None:
    app_id = next(iter(oidc.clients))
    await apps.put(
        app_id,
        permissions=["Alert.Read.All", "Machine.Read.All"],
        tenant_id=OIDC_TENANT,
        issuer=oidc.issuer,
    )
    token = await oidc.token(http, app_id, "Alert.Read.All")
    status, body, allowed = await call(http, ext_gateway, "/api/alerts", token)
    assert status == 200, body
    # The app holds Machine.Read.All, the token's scope does not: the token narrows.
    status, body, narrowed = await call(http, ext_gateway, "/api/machines", token)
    assert (status, error_code(body)) == (403, "insufficient_scope")
    # The token asks for Machine.Isolate, which the app was never granted: the registry decides.
    wide = await oidc.token(http, app_id, "Alert.Read.All Machine.Isolate")
    status, body, refused = await call(
        http, ext_gateway, "/api/machines/m1/isolate", wide, method="POST"
    )
    assert (status, error_code(body)) == (403, "insufficient_scope")

    await event_log.wait_for([allowed, narrowed, refused])
    for request_id, expected in ((allowed, 200), (narrowed, 403), (refused, 403)):
        [event] = event_log.by_request[request_id]
        assert (event.app_id, event.tenant_id, event.status) == (app_id, OIDC_TENANT, expected)

    # The app's live state applies as to any other: disabled, then deleted.
    await apps.put(app_id, enabled=False, tenant_id=OIDC_TENANT, issuer=oidc.issuer, permissions=[])
    body = await eventually(http, ext_gateway, "/api/alerts", token, 403)
    assert error_code(body) == "app_disabled"
    await apps.delete(app_id)
    body = await eventually(http, ext_gateway, "/api/alerts", token, 401)
    assert error_code(body) == "invalid_token"


async def test_a_token_of_an_unregistered_external_client_is_refused_401(
    http: aiohttp.ClientSession, ext_gateway: Gateway, oidc: OidcProvider, event_log: EventLog
) -> None:
    unregistered = list(oidc.clients)[1]
    token = await oidc.token(http, unregistered, "Alert.Read.All")
    status, body, request_id = await call(http, ext_gateway, "/api/alerts", token)
    assert (status, error_code(body)) == (401, "invalid_token")
    assert "unknown" in body["error"]["message"]
    await event_log.wait_for([])
    assert request_id not in event_log.by_request


async def test_an_app_answers_only_to_the_issuer_it_was_registered_with(
    http: aiohttp.ClientSession,
    ext_gateway: Gateway,
    own: dict[str, OwnIssuer],
    apps: AppStates,
) -> None:
    main, other = own["main"], own["other"]
    app_id = f"partner-{uuid.uuid4().hex[:8]}"
    await apps.put(app_id, tenant_id=OWN_TENANT, issuer=main.issuer)
    assert (await call(http, ext_gateway, "/api/alerts", main.token(app_id)))[0] == 200
    # Another trusted issuer's token for the same client id is another party.
    status, body, _ = await call(http, ext_gateway, "/api/alerts", other.token(app_id))
    assert (status, error_code(body)) == (401, "invalid_token")


async def test_a_key_of_another_issuer_never_verifies_a_token_naming_this_one(
    http: aiohttp.ClientSession,
    ext_gateway: Gateway,
    own: dict[str, OwnIssuer],
    apps: AppStates,
) -> None:
    main, other = own["main"], own["other"]
    app_id = f"partner-{uuid.uuid4().hex[:8]}"
    await apps.put(app_id, tenant_id=OWN_TENANT, issuer=main.issuer)
    other_kid = next(iter(other.keys))
    main_kid = next(iter(main.keys))
    forged = [
        # Signed by the other issuer's (published, trusted) key, naming it by its kid.
        main.token(app_id, kid=other_kid, key=other.keys[other_kid]),
        # Signed by the other issuer's key, claiming this issuer's kid.
        main.token(app_id, kid=main_kid, key=other.keys[other_kid]),
    ]
    for token in forged:
        status, body, _ = await call(http, ext_gateway, "/api/alerts", token)
        assert (status, error_code(body)) == (401, "invalid_token"), body
    assert (await call(http, ext_gateway, "/api/alerts", main.token(app_id)))[0] == 200


async def test_wrong_audience_algorithm_type_and_times_are_refused(
    http: aiohttp.ClientSession,
    ext_gateway: Gateway,
    own: dict[str, OwnIssuer],
    apps: AppStates,
) -> None:
    main = own["main"]
    app_id = f"partner-{uuid.uuid4().hex[:8]}"
    await apps.put(app_id, tenant_id=OWN_TENANT, issuer=main.issuer)
    rsa_kid, ec_kid = list(main.keys)[:2]
    now = int(time.time())
    # The EC key under an allowed ES256 works: algorithms are per issuer.
    assert (
        await call(http, ext_gateway, "/api/alerts", main.token(app_id, kid=ec_kid, alg="ES256"))
    )[0] == 200
    bad = {
        "wrong audience": main.token(app_id, aud="someone-else"),
        "expired beyond the leeway": main.token(app_id, iat=now - 700, exp=now - 10),
        "issued in the future": main.token(app_id, iat=now + 120, exp=now + 700),
        "not yet valid": main.token(app_id, nbf=now + 120),
        "RS512 not allowed here": main.token(app_id, kid=rsa_kid, alg="RS512"),
        "HS256 never": main.token(
            app_id, kid=rsa_kid, alg="HS256", key=OctKey.import_key(secrets.token_bytes(32))
        ),
        "typ JWT": main.token(app_id, typ="JWT"),
        "no tenant": main.token(app_id, tid=None),
        "no app": main.token(app_id, azp=None, sub=None),
    }
    for reason, token in bad.items():
        status, body, _ = await call(http, ext_gateway, "/api/alerts", token)
        assert (status, error_code(body)) == (401, "invalid_token"), reason
    # Within the issuer's 5 s leeway an expired token still passes.
    assert (await call(http, ext_gateway, "/api/alerts", main.token(app_id, exp=now - 2)))[0] == 200


async def test_unknown_kids_refetch_once_per_cooldown_and_rotated_keys_are_picked_up(
    http: aiohttp.ClientSession,
    ext_gateway: Gateway,
    own: dict[str, OwnIssuer],
    apps: AppStates,
) -> None:
    quiet, main = own["quiet"], own["main"]
    app_id = f"partner-{uuid.uuid4().hex[:8]}"
    await apps.put(app_id, tenant_id=OWN_TENANT, issuer=quiet.issuer)
    await apps.put(f"{app_id}-main", tenant_id=OWN_TENANT, issuer=main.issuer)
    assert (await call(http, ext_gateway, "/api/alerts", quiet.token(app_id)))[0] == 200
    before = quiet.jwks_hits
    assert before >= 1
    signer = quiet.keys[next(iter(quiet.keys))]
    for _ in range(20):
        made_up = quiet.token(app_id, kid=f"made-up-{uuid.uuid4().hex}", key=signer)
        status, body, _ = await call(http, ext_gateway, "/api/alerts", made_up)
        assert (status, error_code(body)) == (401, "invalid_token")
    # The start-up fetch is within the cooldown (an hour here): made-up kids fetched nothing,
    assert quiet.jwks_hits == before
    # so even a genuinely new key waits for the next scheduled refresh.
    new_kid = quiet.add_key()
    status, _, _ = await call(http, ext_gateway, "/api/alerts", quiet.token(app_id, kid=new_kid))
    assert status == 401
    assert quiet.jwks_hits == before

    # With a one-second cooldown, a burst of made-up kids costs at most one fetch per second.
    main_before = main.jwks_hits
    main_signer = main.keys[next(iter(main.keys))]
    started = time.monotonic()
    for _ in range(40):
        made_up = main.token(f"{app_id}-main", kid=f"made-up-{uuid.uuid4().hex}", key=main_signer)
        assert (await call(http, ext_gateway, "/api/alerts", made_up))[0] == 401
    burst_s = time.monotonic() - started
    assert main.jwks_hits - main_before <= int(burst_s) + 1

    # With a one-second cooldown a rotated key is picked up on its first unknown-kid refetch.
    rotated = main.add_key()
    await eventually(
        http, ext_gateway, "/api/alerts", main.token(f"{app_id}-main", kid=rotated), 200
    )


async def metric(http: aiohttp.ClientSession, gateway: Gateway, name: str, **labels: str) -> float:
    """The value of one sample of the gateway's /metrics (0 when absent)."""
    async with http.get(gateway.admin_url + "/metrics") as response:
        text = await response.text()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and line.split("}")[0].count("=") == len(labels):
            series, _, value = line.rpartition(" ")
            got = ",".join(sorted(series[len(name) + 1 : -1].split(",")))
            if got == wanted:
                return float(value)
    return 0.0


async def test_discovery_down_serves_last_good_keys_for_a_bounded_time_then_refuses(
    http: aiohttp.ClientSession,
    ext_gateway: Gateway,
    own: dict[str, OwnIssuer],
    apps: AppStates,
) -> None:
    flaky = own["flaky"]
    app_id = f"partner-{uuid.uuid4().hex[:8]}"
    await apps.put(app_id, tenant_id=OWN_TENANT, issuer=flaky.issuer)
    cached = flaky.token(app_id)
    assert (await call(http, ext_gateway, "/api/alerts", cached))[0] == 200

    labels = {"issuer": flaky.issuer, "result": "error"}
    errors_before = await metric(
        http, ext_gateway, "capps_gateway_issuer_key_fetches_total", **labels
    )
    flaky.up = False
    went_down = time.monotonic()
    deadline = went_down + DEADLINE_S
    while (
        await metric(http, ext_gateway, "capps_gateway_issuer_key_fetches_total", **labels)
        <= errors_before
    ):
        assert time.monotonic() < deadline, "the gateway never noticed discovery was down"
        await asyncio.sleep(0.1)
    # A fetch has failed: a token never seen before still verifies with the last good keys.
    assert (await call(http, ext_gateway, "/api/alerts", flaky.token(app_id)))[0] == 200

    # Past max_stale_s the keys are dropped: new and cached tokens alike wait (503), never pass.
    body = await eventually(http, ext_gateway, "/api/alerts", flaky.token(app_id), 503)
    assert error_code(body) == "unavailable"
    assert time.monotonic() - went_down >= FLAKY_MAX_STALE_S - 1.0
    status, _, _ = await call(http, ext_gateway, "/api/alerts", cached)
    assert status == 503

    flaky.up = True
    await eventually(http, ext_gateway, "/api/alerts", cached, 200)
