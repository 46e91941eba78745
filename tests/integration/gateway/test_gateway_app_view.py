"""The gateway's local view of app state, fed by a real compacted apps topic, on real HTTP.

A new app's first call waits for its state; disabling, revoking a permission, deleting and
revoking tokens are enforced within about a second; a gateway started later rebuilds the view.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import pytest
from multidict import CIMultiDict

from capps_events import encode_app_state
from tests.integration.gateway.conftest import metric_sample

if TYPE_CHECKING:
    from tests.integration.gateway.conftest import (
        AppStates,
        EventLog,
        Gateway,
        Signer,
        StartGateway,
    )

pytestmark = pytest.mark.integration

READ = ["Alert.Read.All", "Machine.Read.All"]
ENFORCED_WITHIN_S = 15.0
"""A generous deadline: how fast changes are enforced is measured by `make bench` (propagation)."""
"""The design says "within about a second"; a little slack for a busy two-core machine."""


def new_app() -> str:
    return f"app-view-{uuid.uuid4().hex[:10]}"


async def get(
    http: aiohttp.ClientSession, url: str, token: str
) -> tuple[int, CIMultiDict[str], Any, str]:
    """GET with a fresh request id; returns status, headers, JSON body and the request id."""
    request_id = f"it-{uuid.uuid4()}"
    headers = {"Authorization": f"Bearer {token}", "X-Request-Id": request_id}
    async with http.get(url, headers=headers) as response:
        body = await response.json(content_type=None)
        return response.status, CIMultiDict(response.headers), body, request_id


async def until(
    read: Callable[[], Awaitable[float]], holds: Callable[[float], bool], what: str
) -> None:
    """Poll `read()` until `holds` its value; fail naming `what` after a generous deadline."""
    deadline = time.monotonic() + 30
    while not holds(await read()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def until_status(
    http: aiohttp.ClientSession, url: str, token: str, status: int, within_s: float
) -> tuple[float, CIMultiDict[str], Any, str, list[str]]:
    """Call until the answer is `status`; elapsed time, that answer, and every request id sent."""
    started = time.monotonic()
    sent: list[str] = []
    while True:
        code, headers, body, rid = await get(http, url, token)
        sent.append(rid)
        elapsed = time.monotonic() - started
        if code == status:
            return elapsed, headers, body, rid, sent
        if elapsed > within_s:
            pytest.fail(f"still {code} {body} after {elapsed:.2f} s, expected {status}")
        await asyncio.sleep(0.02)


class Rig(NamedTuple):
    """One gateway on the test's topics, with what a test drives it by."""

    gateway: Gateway
    http: aiohttp.ClientSession
    signer: Signer
    apps: AppStates
    event_log: EventLog

    async def serving_app(self, path: str = "/api/alerts") -> tuple[str, str]:
        """A new app published with READ and a token of it, already served once at `path`."""
        app_id = new_app()
        await self.apps.put(app_id, permissions=READ)
        token = self.signer.token(READ, client_id=app_id)
        assert (await get(self.http, f"{self.gateway.url}{path}", token))[0] == 200
        return app_id, token


@pytest.fixture
def rig(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    signer: Signer,
    apps: AppStates,
    event_log: EventLog,
) -> Rig:
    """The gateway and its drivers, in one argument."""
    return Rig(gateway, http, signer, apps, event_log)


async def metric(http: aiohttp.ClientSession, gateway: Gateway, name: str) -> float:
    """The summed value of a metric family's samples named exactly `name`."""
    async with http.get(f"{gateway.admin_url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.partition("{")[0] == name:
            total += float(value)
    return total


async def test_first_call_of_an_app_waits_for_its_state(rig: Rig) -> None:
    gateway, http, signer, apps, event_log = rig
    app_id = new_app()
    token = signer.token(READ, client_id=app_id)
    call = asyncio.create_task(get(http, f"{gateway.url}/api/alerts", token))
    await asyncio.sleep(0.5)
    assert not call.done()
    await apps.put(app_id, permissions=READ)
    status, _, body, rid = await asyncio.wait_for(call, 5.0)
    assert status == 200, body
    await event_log.wait_for([rid])
    [event] = event_log.by_request[rid]
    assert (event.app_id, event.status) == (app_id, 200)
    assert await metric(http, gateway, "capps_gateway_app_waits_total") >= 1


async def test_app_never_published_is_401_after_the_bounded_wait(
    gateway: Gateway, http: aiohttp.ClientSession, signer: Signer
) -> None:
    token = signer.token(READ, client_id=new_app())
    timeouts = 'capps_gateway_app_waits_total{result="timeout"}'
    before = await metric_sample(http, gateway, timeouts)
    status, headers, body, rid = await get(http, f"{gateway.url}/api/alerts", token)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert (body["error"]["code"], body["error"]["target"]) == ("invalid_token", rid)
    # It waited for the app's state, and gave up at its bound.
    assert await metric_sample(http, gateway, timeouts) == before + 1


async def test_disabled_app_is_403_within_a_second_and_counted(rig: Rig) -> None:
    gateway, http, _signer, apps, event_log = rig
    app_id, token = await rig.serving_app()
    url = f"{gateway.url}/api/alerts"

    # Disabling also moves tokens_valid_after, as the registry does; while disabled the app
    # still answers app_disabled rather than invalid_token.
    await apps.put(app_id, permissions=READ, enabled=False, tokens_valid_after=datetime.now(UTC))
    _, headers, body, rid, _ = await until_status(http, url, token, 403, ENFORCED_WITHIN_S)
    assert (body["error"]["code"], body["error"]["target"]) == ("app_disabled", rid)
    assert headers["X-Request-Id"] == rid
    await event_log.wait_for([rid])
    [event] = event_log.by_request[rid]
    assert (event.app_id, event.route, event.status) == (app_id, "/api/alerts", 403)


async def test_revoked_permission_is_403_insufficient_scope_with_the_same_token(rig: Rig) -> None:
    gateway, http, signer, apps, event_log = rig
    app_id, token = await rig.serving_app("/api/machines")
    machines, alerts = f"{gateway.url}/api/machines", f"{gateway.url}/api/alerts"

    await apps.put(app_id, permissions=["Alert.Read.All"])
    _, headers, body, rid, _ = await until_status(http, machines, token, 403, ENFORCED_WITHIN_S)
    assert headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
    assert body["error"]["code"] == "insufficient_scope"
    assert "Machine.Read.All" in body["error"]["message"]
    assert (await get(http, alerts, token))[0] == 200
    await event_log.wait_for([rid])
    assert event_log.by_request[rid][0].status == 403

    # Granting a permission the token does not carry needs a new token.
    await apps.put(app_id, permissions=[*READ, "Machine.Isolate"])
    await until_status(http, machines, token, 200, ENFORCED_WITHIN_S)
    isolate = signer.token(["Machine.Isolate"], client_id=app_id)
    async with http.post(
        f"{gateway.url}/api/machines/m-0001/isolate",
        headers={"Authorization": f"Bearer {token}"},
        json={"Comment": "contain"},
    ) as response:
        assert response.status == 403
    async with http.post(
        f"{gateway.url}/api/machines/m-0001/isolate",
        headers={"Authorization": f"Bearer {isolate}"},
        json={"Comment": "contain"},
    ) as response:
        assert response.status == 201


async def test_deleted_app_is_401_and_emits_no_event(rig: Rig) -> None:
    gateway, http, signer, apps, event_log = rig
    app_id, token = await rig.serving_app()
    url = f"{gateway.url}/api/alerts"

    await apps.delete(app_id)
    _, headers, body, rid, _ = await until_status(http, url, token, 401, ENFORCED_WITHIN_S)
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert (body["error"]["code"], body["error"]["target"]) == ("invalid_token", rid)

    # A deleted app is known to be gone: refused at once, not after the wait for new apps.
    waits = await metric(http, gateway, "capps_gateway_app_waits_total")
    status, _, _, again = await get(http, url, token)
    assert status == 401
    assert await metric(http, gateway, "capps_gateway_app_waits_total") == waits
    # A state published late, after the tombstone, does not bring the app back.
    ignored = 'capps_gateway_app_state_records_total{result="ignored"}'
    before = await metric_sample(http, gateway, ignored)
    await apps.put(app_id, permissions=READ)
    await until(
        lambda: metric_sample(http, gateway, ignored), lambda n: n > before, "late state read"
    )
    status, _, _, late = await get(http, url, token)
    assert status == 401
    _, _, _, sentinel = await get(http, url, signer.token(READ))
    await event_log.wait_for([sentinel])
    assert [r for r in (rid, again, late) if r in event_log.by_request] == []


async def test_token_issued_before_tokens_valid_after_is_401(rig: Rig) -> None:
    gateway, http, signer, apps, event_log = rig
    app_id = new_app()
    now = datetime.now(UTC)
    await apps.put(app_id, permissions=READ, tokens_valid_after=now - timedelta(seconds=30))
    old = signer.token(READ, client_id=app_id, iat=int((now - timedelta(seconds=60)).timestamp()))
    fresh = signer.token(READ, client_id=app_id)
    url = f"{gateway.url}/api/alerts"
    status, headers, body, rid = await get(http, url, old)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert body["error"]["code"] == "invalid_token"
    status, _, _, sentinel = await get(http, url, fresh)
    assert status == 200
    await event_log.wait_for([sentinel])
    assert rid not in event_log.by_request


async def test_gateway_started_later_rebuilds_the_view_from_the_topic(
    start_gateway: StartGateway,
    demo_api_url: str,
    http: aiohttp.ClientSession,
    signer: Signer,
    apps: AppStates,
) -> None:
    live, disabled, deleted, revoked = new_app(), new_app(), new_app(), new_app()
    for app_id in (live, disabled, deleted, revoked):
        await apps.put(app_id, permissions=READ)
    await apps.put(disabled, permissions=READ, enabled=False)
    await apps.delete(deleted)
    await apps.put(revoked, permissions=["Alert.Read.All"])
    # Records the view must survive: not JSON, missing fields, a state under another app's key.
    await apps.raw(b"app-garbage", b"not json")
    await apps.raw(b"app-empty", b"{}")
    other = encode_app_state(await apps.put(new_app()), "//capps/test")
    await apps.raw(b"app-mismatch", other.value)

    restarted = await start_gateway(demo_api_url)
    alerts, machines = f"{restarted.url}/api/alerts", f"{restarted.url}/api/machines"
    assert (await get(http, alerts, signer.token(READ, client_id=live)))[0] == 200
    status, _, body, _ = await get(http, alerts, signer.token(READ, client_id=disabled))
    assert (status, body["error"]["code"]) == (403, "app_disabled")
    status, _, body, _ = await get(http, alerts, signer.token(READ, client_id=deleted))
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    status, _, body, _ = await get(http, machines, signer.token(READ, client_id=revoked))
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")
    # Ready means loaded: none of these waited for the view to catch up.
    assert await metric(http, restarted, "capps_gateway_app_waits_total") == 0
    assert await metric(http, restarted, "capps_gateway_app_state_decode_errors_total") >= 3
    assert await metric(http, restarted, "capps_gateway_apps_known") >= 4
