"""The page's session cookie and headers, against the registry app on real PostgreSQL and Redis."""

import json
from http.cookies import SimpleCookie

import httpx
import pytest

from capps_registry.web.sessions import SESSION_COOKIE, SIGNIN_COOKIE, load_session, session_key
from tests.integration.registry.conftest import Running, Tenant

pytestmark = pytest.mark.integration


def _cookie(response: httpx.Response, name: str) -> dict[str, str | bool]:
    """The attributes of the cookie `name` the response sets (flags as True)."""
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            morsel = jar[name]
            flags = {key: morsel[key] for key in ("httponly", "secure", "samesite", "path")}
            return {"value": morsel.value, **flags}
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


async def _sign_in(client: httpx.AsyncClient, tenant: Tenant) -> httpx.Response:
    form = await client.get("/signin")
    csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return await client.post(
        "/signin",
        data={
            "client_id": tenant.client_id,
            "client_secret": tenant.client_secret,
            "csrf_token": csrf,
        },
    )


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_cookies_are_httponly_strict_and_secure_over_https(
    registry: Running, tenant: Tenant, scheme: str
) -> None:
    transport = httpx.ASGITransport(app=registry.asgi)
    async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://registry.test") as c:
        form = await c.get("/signin")
        assert form.status_code == 200
        signin = _cookie(form, SIGNIN_COOKIE)
        signed_in = await _sign_in(c, tenant)
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/"
        session = _cookie(signed_in, SESSION_COOKIE)
    for cookie in (signin, session):
        assert cookie["httponly"] is True
        assert str(cookie["samesite"]).lower() == "strict"
        assert cookie["path"] == "/"
        assert bool(cookie["secure"]) is (scheme == "https")


async def test_pages_carry_a_strict_content_security_policy_and_no_store(
    registry: Running, tenant: Tenant
) -> None:
    transport = httpx.ASGITransport(app=registry.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        await _sign_in(c, tenant)
        page = await c.get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"


async def test_without_a_session_a_page_sends_to_sign_in_and_a_form_post_changes_nothing(
    registry: Running,
) -> None:
    transport = httpx.ASGITransport(app=registry.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        page = await c.get("/")
        post = await c.post("/apps", data={"name": "x", "per_minute": "1", "per_hour": "1"})
        c.cookies.set(SESSION_COOKIE, "not-a-session", domain="registry.test")
        stale = await c.get("/")
    assert (page.status_code, page.headers["location"]) == (303, "/signin")
    assert (post.status_code, post.headers["location"]) == (303, "/signin")
    assert (stale.status_code, stale.headers["location"]) == (303, "/signin?reason=expired")


async def test_the_header_names_the_tenant_and_an_older_session_still_loads(
    registry: Running, tenant: Tenant
) -> None:
    transport = httpx.ASGITransport(app=registry.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="https://registry.test") as c:
        signed_in = await _sign_in(c, tenant)
        session_id = str(_cookie(signed_in, SESSION_COOKIE)["value"])
        listing = await c.get("/")
    assert f'<strong title="{tenant.tenant_id}">test-' in listing.text
    # A session stored before the name was kept: the page falls back to the tenant's id.
    raw = await registry.state.redis.get(session_key(session_id))
    assert raw is not None
    stored = json.loads(raw)
    del stored["tenant_name"]
    await registry.state.redis.set(session_key(session_id), json.dumps(stored), keepttl=True)
    loaded = await load_session(registry.state.redis, session_id)
    assert loaded is not None
    assert (loaded.tenant_id, loaded.tenant_name) == (tenant.tenant_id, "")
    async with httpx.AsyncClient(
        transport=transport,
        base_url="https://registry.test",
        cookies={SESSION_COOKIE: session_id},
    ) as c:
        assert f"Tenant <code>{tenant.tenant_id}</code>" in (await c.get("/")).text
