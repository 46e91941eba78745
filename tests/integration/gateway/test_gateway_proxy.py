"""The gateway end to end on real HTTP and real Kafka: answers, refusals, and one event per call."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.integration.gateway.conftest import ALL_ROLES, metric_sample

if TYPE_CHECKING:
    from tests.integration.gateway.conftest import (
        AppStates,
        EventLog,
        Gateway,
        Signer,
        StartGateway,
    )

pytestmark = pytest.mark.integration


def new_request_id() -> str:
    return f"it-{uuid.uuid4()}"


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    request_id: str | None = None,
) -> tuple[int, CIMultiDict[str], Any, str]:
    """One call; returns status, headers, JSON body and the request id it was sent with."""
    request_id = request_id or new_request_id()
    headers = {"X-Request-Id": request_id}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, headers=headers, json=body) as response:
        payload = await response.json(content_type=None)
        return response.status, CIMultiDict(response.headers), payload, request_id


def assert_error(payload: Any, code: str, request_id: str) -> None:
    assert set(payload) == {"error"}
    assert payload["error"]["code"] == code
    assert payload["error"]["target"] == request_id
    assert isinstance(payload["error"]["message"], str)
    assert payload["error"]["message"]


async def test_valid_calls_are_proxied_with_identity_headers(
    *,
    gateway: Gateway,
    http: aiohttp.ClientSession,
    signer: Signer,
    event_log: EventLog,
    tenant_id: str,
    apps: AppStates,
) -> None:
    app_id = f"app-{uuid.uuid4().hex[:8]}"
    await apps.put(app_id)
    token = signer.token(ALL_ROLES, client_id=app_id)
    base = gateway.url

    status, headers, listing, rid_list = await call(http, "GET", f"{base}/api/alerts", token=token)
    assert status == 200
    assert headers["X-Request-Id"] == rid_list
    assert len(listing["value"]) > 0

    status, _, patched, rid_patch = await call(
        http,
        "PATCH",
        f"{base}/api/alerts/da-000003",
        token=token,
        body={"status": "InProgress", "comment": "triage"},
    )
    assert status == 200
    # The demo API records the caller from X-Capps-App-Id, which only the gateway sets.
    assert patched["comments"][-1]["createdBy"] == app_id

    status, _, action, rid_isolate = await call(
        http,
        "POST",
        f"{base}/api/machines/m-0002/isolate",
        token=token,
        body={"Comment": "contain"},
    )
    assert (status, action["requestor"]) == (201, app_id)

    # A bad body is the upstream's 400, passed through and still counted.
    status, _, problem, rid_bad = await call(
        http, "POST", f"{base}/api/advancedqueries/run", token=token, body={"nope": 1}
    )
    assert status == 400
    assert "unknown fields" in problem["error"]["message"]

    status, _, missing, rid_missing = await call(
        http, "GET", f"{base}/api/machines/unknown-machine", token=token
    )
    assert status == 404
    assert missing["error"]["code"] == "not_found"

    expected = {
        rid_list: ("GET", "/api/alerts", 200),
        rid_patch: ("PATCH", "/api/alerts/{id}", 200),
        rid_isolate: ("POST", "/api/machines/{id}/isolate", 201),
        rid_bad: ("POST", "/api/advancedqueries/run", 400),
        rid_missing: ("GET", "/api/machines/{id}", 404),
    }
    await event_log.wait_for(list(expected))
    for rid, (method, route, code) in expected.items():
        [event] = event_log.by_request[rid]
        assert (event.method, event.route, event.status) == (method, route, code)
        assert (event.app_id, event.tenant_id, event.gateway) == (
            app_id,
            tenant_id,
            gateway.instance_id,
        )
        assert event.latency_ms > 0
        assert event.bytes_out > 0
        assert abs(datetime.now(UTC) - event.time) < timedelta(minutes=1)
    assert event_log.by_request[rid_patch][0].bytes_in > 0


async def test_request_id_is_generated_when_missing_or_insane(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/api/alerts", headers={"X-Request-Id": "bad id!"}) as r:
        body = await r.json()
        generated = r.headers["X-Request-Id"]
    assert generated != "bad id!"
    assert str(uuid.UUID(generated)) == generated
    assert body["error"]["target"] == generated


async def test_missing_token_is_401_bearer(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, headers, payload, rid = await call(http, "GET", f"{gateway.url}/api/alerts")
    assert status == 401
    assert headers["WWW-Authenticate"] == "Bearer"
    assert_error(payload, "missing_token", rid)


def bad_tokens(signer: Signer) -> dict[str, str]:
    now = int(time.time())
    intruder = signer.keys[next(iter(signer.keys))].generate_key(
        2048, parameters={"kid": next(iter(signer.keys))}
    )
    return {
        "garbage": "not-a-jwt",
        "garbage_segments": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "expired": signer.token(ALL_ROLES, iat=now - 7200, exp=now - 3600),
        "wrong_audience": signer.token(ALL_ROLES, aud="someone-else"),
        "wrong_issuer": signer.token(ALL_ROLES, iss="http://evil.example"),
        "forged_signature": signer.token(ALL_ROLES, key=intruder),
        "unknown_kid": signer.token(ALL_ROLES, kid="never-published", key=intruder),
        "no_tenant": signer.token(ALL_ROLES, tid=None),
    }


async def test_bad_tokens_are_401_invalid_token_and_emit_no_event(
    gateway: Gateway, http: aiohttp.ClientSession, signer: Signer, event_log: EventLog
) -> None:
    refused: list[str] = []
    for name, token in bad_tokens(signer).items():
        status, headers, payload, rid = await call(
            http, "GET", f"{gateway.url}/api/alerts", token=token
        )
        assert status == 401, name
        assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', name
        assert_error(payload, "invalid_token", rid)
        refused.append(rid)
    # A valid call afterwards: once its event is in, anything emitted before it is too.
    _, _, _, sentinel = await call(
        http, "GET", f"{gateway.url}/api/alerts", token=signer.token(ALL_ROLES)
    )
    await event_log.wait_for([sentinel])
    assert [rid for rid in refused if rid in event_log.by_request] == []
    assert len(event_log.by_request[sentinel]) == 1


async def test_missing_permission_is_403_and_counted(
    gateway: Gateway, http: aiohttp.ClientSession, signer: Signer, event_log: EventLog
) -> None:
    token = signer.token(["Machine.Read.All"])
    status, headers, payload, rid = await call(
        http, "GET", f"{gateway.url}/api/alerts/da-000001", token=token
    )
    assert status == 403
    assert headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
    assert_error(payload, "insufficient_scope", rid)
    assert "Alert.Read.All" in payload["error"]["message"]
    await event_log.wait_for([rid])
    [event] = event_log.by_request[rid]
    assert (event.route, event.status) == ("/api/alerts/{id}", 403)


async def test_unknown_route_is_404_and_counted_as_unmatched(
    gateway: Gateway, http: aiohttp.ClientSession, signer: Signer, event_log: EventLog
) -> None:
    token = signer.token(ALL_ROLES)
    results = [
        await call(http, method, f"{gateway.url}{path}", token=token)
        for method, path in [
            ("GET", "/api/secret-admin"),
            ("DELETE", "/api/alerts/da-000001"),
            ("GET", "/api/alerts/%2e%2e"),
        ]
    ]
    for status, _, payload, rid in results:
        assert status == 404
        assert_error(payload, "not_found", rid)
    await event_log.wait_for([rid for *_, rid in results])
    for *_, rid in results:
        [event] = event_log.by_request[rid]
        assert (event.route, event.status) == ("(unmatched)", 404)


async def test_upstream_down_is_502_and_counted(
    start_gateway: StartGateway,
    dead_upstream_url: str,
    http: aiohttp.ClientSession,
    signer: Signer,
    event_log: EventLog,
) -> None:
    dead = await start_gateway(dead_upstream_url)
    status, _, payload, rid = await call(
        http, "GET", f"{dead.url}/api/machines", token=signer.token(ALL_ROLES)
    )
    assert status == 502
    assert_error(payload, "bad_gateway", rid)
    await event_log.wait_for([rid])
    [event] = event_log.by_request[rid]
    assert (event.status, event.gateway) == (502, dead.instance_id)


async def test_upstream_timeout_is_504_and_counted(
    start_gateway: StartGateway,
    odd_upstream_url: str,
    http: aiohttp.ClientSession,
    signer: Signer,
    event_log: EventLog,
) -> None:
    slow = await start_gateway(odd_upstream_url, timeout_s=1.0)
    status, _, payload, rid = await call(
        http, "GET", f"{slow.url}/api/alerts", token=signer.token(ALL_ROLES)
    )
    assert status == 504
    assert_error(payload, "gateway_timeout", rid)
    await event_log.wait_for([rid])
    assert event_log.by_request[rid][0].status == 504


async def test_large_unsized_answer_is_streamed_through(
    *,
    start_gateway: StartGateway,
    streamed_body: bytes,
    odd_upstream_url: str,
    http: aiohttp.ClientSession,
    signer: Signer,
    event_log: EventLog,
) -> None:
    streaming = await start_gateway(odd_upstream_url)
    rid = new_request_id()
    headers = {"Authorization": f"Bearer {signer.token(ALL_ROLES)}", "X-Request-Id": rid}
    async with http.get(f"{streaming.url}/api/machines", headers=headers) as response:
        body = await response.read()
        assert response.status == 200
        assert response.headers["X-Request-Id"] == rid
    assert body == streamed_body
    await event_log.wait_for([rid])
    assert event_log.by_request[rid][0].bytes_out == len(body)


async def test_upstream_cookies_never_reach_another_call(
    *,
    start_gateway: StartGateway,
    odd_upstream_url: str,
    http: aiohttp.ClientSession,
    signer: Signer,
) -> None:
    """The gateway shares one upstream session across apps: it must not keep a cookie jar."""
    # By name, not by IP: aiohttp's default jar ignores cookies of IP-address hosts.
    gateway = await start_gateway(odd_upstream_url.replace("127.0.0.1", "localhost"))
    token = signer.token(ALL_ROLES)
    first = await call(http, "GET", f"{gateway.url}/api/alerts/first", token=token)
    second = await call(http, "GET", f"{gateway.url}/api/alerts/second", token=token)
    assert first[0] == second[0] == 200
    assert first[2] == second[2] == {"cookie": None}


async def test_new_signing_key_is_fetched_on_unknown_kid(
    gateway: Gateway, http: aiohttp.ClientSession, signer: Signer
) -> None:
    kid = f"rotated-{uuid.uuid4().hex[:8]}"
    signer.add_key(kid)
    token = signer.token(ALL_ROLES, kid=kid)
    # The gateway refetches at most every few seconds; it must pick the key up within that.
    deadline = time.monotonic() + 10
    status = 0
    while time.monotonic() < deadline:
        status, _, _, _ = await call(http, "GET", f"{gateway.url}/api/alerts", token=token)
        if status == 200:
            break
        await asyncio.sleep(0.5)
    assert status == 200


async def test_admin_endpoints(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.admin_url}/readyz") as response:
        assert response.status == 200
        assert (await response.json())["checks"] == {
            "jwks": "ok",
            "kafka": "ok",
            "apps": "ok",
            "ratelimit": "ok",
        }
    missing = 'capps_gateway_unauthenticated_total{reason="missing"}'
    before = await metric_sample(http, gateway, missing)
    status, _, _, _ = await call(http, "GET", f"{gateway.url}/api/alerts")
    assert status == 401
    # This test's own tokenless call moved the counter, whatever ran before.
    assert await metric_sample(http, gateway, missing) == before + 1


async def test_a_body_over_the_limit_is_413_and_counted(
    gateway: Gateway, http: aiohttp.ClientSession, signer: Signer, event_log: EventLog
) -> None:
    request_id = new_request_id()
    too_big = io.BytesIO(b"x" * (10 * 1024 * 1024 + 1))
    async with http.post(
        f"{gateway.url}/api/advancedqueries/run",
        data=too_big,
        headers={
            "Authorization": f"Bearer {signer.token(ALL_ROLES)}",
            "X-Request-Id": request_id,
            "Content-Type": "application/json",
        },
    ) as response:
        assert response.status == 413
        assert_error(await response.json(), "payload_too_large", request_id)
    await event_log.wait_for([request_id])
    [event] = event_log.by_request[request_id]
    assert event.status == 413


async def test_calls_answer_503_while_signing_keys_are_not_loaded(
    start_gateway: StartGateway,
    demo_api_url: str,
    dead_upstream_url: str,
    http: aiohttp.ClientSession,
    signer: Signer,
) -> None:
    # The registry's JWKS cannot be fetched: the gateway says so and refuses to guess.
    keyless = await start_gateway(
        demo_api_url,
        extra_env={"REGISTRY_URL": dead_upstream_url},
        ready_path="/healthz",
    )
    async with http.get(f"{keyless.admin_url}/readyz") as response:
        assert response.status == 503
        assert (await response.json())["checks"]["jwks"] != "ok"
    status, _, payload, rid = await call(
        http, "GET", f"{keyless.url}/api/alerts", token=signer.token(ALL_ROLES)
    )
    assert status == 503
    assert_error(payload, "unavailable", rid)
    assert "verify tokens" in payload["error"]["message"]


async def test_the_compiled_gauge_tells_whether_the_per_call_modules_run_compiled(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    # The gateway runs from this checkout: compiled exactly when this process imports the
    # edge as an extension (services/gateway/native.py built it).
    import capps_gateway.edge

    compiled = (capps_gateway.edge.__file__ or "").endswith(".so")
    async with http.get(f"{gateway.admin_url}/metrics") as response:
        exposed = await response.text()
    assert "\ncapps_gateway_compiled " in exposed
    assert await metric_sample(http, gateway, "capps_gateway_compiled") == (
        1.0 if compiled else 0.0
    )
