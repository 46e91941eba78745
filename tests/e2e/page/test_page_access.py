"""Who gets into the page and what a forged or foreign request gets: sessions, CSRF, tenants."""

import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests
from authlib.integrations.requests_client import OAuth2Session
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from capps_registry.web.sessions import SESSION_COOKIE, session_key
from tests.e2e.conftest import SessionFactory, _create_tenant
from tests.e2e.page.test_page import serious_violations, sign_in
from tests.infra import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenant() -> dict[str, str]:
    """A tenant whose admin uses the page."""
    return _create_tenant()


@pytest.fixture(scope="module")
def stranger() -> dict[str, str]:
    """Another tenant's admin."""
    return _create_tenant()


@pytest.fixture(scope="module")
def admin_api(tenant: dict[str, str], oauth_session: SessionFactory) -> OAuth2Session:
    """The first tenant's admin on the admin API."""
    return oauth_session(tenant["client_id"], tenant["client_secret"])


@pytest.fixture(scope="module")
def app_id(stack: Stack, admin_api: OAuth2Session) -> str:
    """An app of the first tenant."""
    created = admin_api.post(
        f"{stack.registry_url}/v1/apps",
        json={"name": "Asset inventory", "permissions": ["Machine.Read.All"]},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    found: str = created.json()["id"]
    return found


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test."""
    opened = browser.new_context()
    try:
        yield opened
    finally:
        opened.close()


def session_cookie(context: BrowserContext) -> str:
    """The value of the page's session cookie, after checking its attributes."""
    [cookie] = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    return cookie["value"]


def test_wrong_credentials_get_a_clear_message_and_no_session(
    stack: Stack, context: BrowserContext, tenant: dict[str, str]
) -> None:
    page = context.new_page()
    page.goto(f"{stack.registry_url}/signin")
    page.get_by_label("Client ID").fill(tenant["client_id"])
    page.get_by_label("Client secret").fill("not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The client ID or client secret is not right. Check both and try again."
    )
    assert [c for c in context.cookies() if c["name"] == SESSION_COOKIE] == []
    assert serious_violations(page) == []


def test_an_app_cannot_sign_in_to_the_page(
    stack: Stack, context: BrowserContext, admin_api: OAuth2Session
) -> None:
    created = admin_api.post(
        f"{stack.registry_url}/v1/apps", json={"name": "Some app", "permissions": []}, timeout=10
    ).json()
    page = context.new_page()
    page.goto(f"{stack.registry_url}/signin")
    page.get_by_label("Client ID").fill(created["id"])
    page.get_by_label("Client secret").fill(created["client_secret"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("an application's credentials")


def test_sign_out_ends_the_session_and_an_expired_one_asks_to_sign_in_again(
    stack: Stack, context: BrowserContext, tenant: dict[str, str]
) -> None:
    page = context.new_page()
    sign_in(page, stack, tenant)
    cookie = session_cookie(context)

    # The session ends on the server (as at its expiry), while the browser keeps the cookie.
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        assert store.delete(session_key(cookie)) == 1
    finally:
        store.close()
    page.goto(f"{stack.registry_url}/")
    expect(page).to_have_url(f"{stack.registry_url}/signin?reason=expired")
    expect(page.get_by_role("status")).to_have_text(
        "Your session has expired. Sign in again to continue."
    )

    sign_in(page, stack, tenant)
    old = session_cookie(context)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    # The old cookie, replayed, is worth nothing: the session is gone from the server.
    context.add_cookies([{"name": SESSION_COOKIE, "value": old, "url": stack.registry_url}])
    page.goto(f"{stack.registry_url}/")
    expect(page).to_have_url(f"{stack.registry_url}/signin?reason=expired")


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    stack: Stack,
    context: BrowserContext,
    tenant: dict[str, str],
    admin_api: OAuth2Session,
    app_id: str,
) -> None:
    page = context.new_page()
    sign_in(page, stack, tenant)
    # The browser's own cookies go with it: only the form's token is missing (or wrong).
    forms: list[dict[str, str | float | bool]] = [
        {"enabled": "false"},
        {"enabled": "false", "csrf_token": "guessed"},
    ]
    for form in forms:
        answer = context.request.post(
            f"{stack.registry_url}/apps/{app_id}/status", form=form, max_redirects=0
        )
        assert answer.status == 403
        assert "could not be verified" in answer.text()
    answer = context.request.post(
        f"{stack.registry_url}/apps/{app_id}/delete",
        form={"confirm_name": "Asset inventory"},
        max_redirects=0,
    )
    assert answer.status == 403
    app = admin_api.get(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10).json()
    assert app["enabled"] is True


def test_another_tenants_admin_never_sees_the_app_by_url(
    stack: Stack, context: BrowserContext, stranger: dict[str, str], app_id: str
) -> None:
    page = context.new_page()
    sign_in(page, stack, stranger)
    expect(page.locator(f'tr[data-app-id="{app_id}"]')).to_have_count(0)
    answer = page.goto(f"{stack.registry_url}/apps/{app_id}")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert "Asset inventory" not in page.content()
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value") or ""
    forged_forms: list[tuple[str, dict[str, str | float | bool]]] = [
        ("status", {"enabled": "false"}),
        ("delete", {"confirm_name": "Asset inventory"}),
        ("permissions/remove", {"permission": "Machine.Read.All"}),
    ]
    for path, form in forged_forms:
        forged = context.request.post(
            f"{stack.registry_url}/apps/{app_id}/{path}",
            form={**form, "csrf_token": csrf},
            max_redirects=0,
        )
        assert forged.status == 404, path
        assert "Asset inventory" not in forged.text()


def test_the_pages_read_without_javascript_and_errors_are_pages(
    stack: Stack, browser: Browser, tenant: dict[str, str], app_id: str
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, stack, tenant)
        expect(page.locator(f'tr[data-app-id="{app_id}"]')).to_contain_text("Asset inventory")
        page.get_by_role("link", name="Asset inventory").click()
        expect(page.locator("#trend-chart svg")).to_be_visible()
        expect(page.get_by_role("button", name="Save changes")).to_be_visible()

        missing = page.goto(f"{stack.registry_url}/apps/not-an-app")
        assert missing is not None
        assert missing.status == 404
        expect(page.get_by_role("alert")).to_have_text("no app with this id")
        bad = page.goto(f"{stack.registry_url}/?sort=password")
        assert bad is not None
        assert bad.status == 400
        expect(page.get_by_role("alert")).to_contain_text("sort must be one of")
        assert "Traceback" not in page.content()
    finally:
        context.close()


def test_failed_sign_ins_are_limited_like_the_token_endpoint(
    stack: Stack, context: BrowserContext
) -> None:
    victim = _create_tenant()
    page = context.new_page()
    page.goto(f"{stack.registry_url}/signin")
    # The token endpoint's limit is 10 failures per client id per minute window; keep guessing
    # until the page refuses (a window may turn over midway), within a bound.
    failures = 0
    while failures < 25:
        page.get_by_label("Client ID").fill(victim["client_id"])
        page.get_by_label("Client secret").fill(f"guess-{failures}")
        page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert").inner_text()
        if alert.startswith("Too many failed sign-ins"):
            break
        assert alert == "The client ID or client secret is not right. Check both and try again."
        failures += 1
    assert 10 <= failures < 25
    # While limited, even the right secret is refused, here and at the token endpoint.
    page.get_by_label("Client ID").fill(victim["client_id"])
    page.get_by_label("Client secret").fill(victim["client_secret"])
    with page.expect_response(f"{stack.registry_url}/signin") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 429
    assert int(answer.value.headers["retry-after"]) >= 1
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    token = context.request.post(
        f"{stack.registry_url}/oauth2/token",
        form={
            "grant_type": "client_credentials",
            "client_id": victim["client_id"],
            "client_secret": victim["client_secret"],
        },
    )
    assert token.status == 429


@pytest.fixture
def app_page(
    context: BrowserContext, stack: Stack, tenant: dict[str, str], app_id: str
) -> tuple[Page, Locator]:
    """The app's page, signed in, and its settings form."""
    page = context.new_page()
    sign_in(page, stack, tenant)
    page.goto(f"{stack.registry_url}/apps/{app_id}")
    return page, page.locator("#edit-form")


def saved_status(page: Page, form: Locator, url: str) -> int:
    """Click Save changes; the status the form's POST to `url` was answered with."""
    with page.expect_response(url) as answer:
        form.get_by_role("button", name="Save changes").click()
    status: int = answer.value.status
    return status


def test_a_bad_edit_shows_the_form_again_with_the_problem_and_changes_nothing(
    stack: Stack, admin_api: OAuth2Session, app_id: str, app_page: tuple[Page, Locator]
) -> None:
    page, form = app_page
    form.get_by_label("Calls per minute").fill("500")
    form.get_by_label("Calls per hour").fill("100")
    assert saved_status(page, form, f"{stack.registry_url}/apps/{app_id}") == 400
    expect(page.get_by_role("alert")).to_contain_text("per_hour (100) must be at least per_minute")
    form.get_by_label("Calls per minute").fill("lots")
    form.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert")).to_contain_text("Calls per minute: 'lots' is not a whole")
    app = admin_api.get(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10).json()
    assert app["rate_limit"] == {"per_minute": 100, "per_hour": 1500}


def test_saving_a_form_drawn_before_someone_elses_change_keeps_their_change(
    stack: Stack, admin_api: OAuth2Session, app_id: str, app_page: tuple[Page, Locator]
) -> None:
    page, form = app_page
    form.get_by_label("Calls per minute").fill("250")
    # Meanwhile another admin grants a permission through the API.
    granted = admin_api.patch(
        f"{stack.registry_url}/v1/apps/{app_id}",
        json={"permissions": ["Machine.Read.All", "Alert.Read.All"]},
        timeout=10,
    )
    assert granted.status_code == 200, granted.text
    assert saved_status(page, form, f"{stack.registry_url}/apps/{app_id}") == 409
    expect(page.get_by_role("alert")).to_contain_text("Someone else changed this application")
    app = admin_api.get(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10).json()
    assert app["permissions"] == ["Alert.Read.All", "Machine.Read.All"]
    assert app["rate_limit"]["per_minute"] == 100
    # The form now shows the grant; the same change made again is saved beside it.
    expect(form.get_by_label("Alert.Read.All", exact=True)).to_be_checked()
    form.get_by_label("Calls per minute").fill("250")
    form.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    app = admin_api.get(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10).json()
    assert app["permissions"] == ["Alert.Read.All", "Machine.Read.All"]
    assert app["rate_limit"]["per_minute"] == 250
    # The trail tells the page's save from the API's grant, though one admin client made both.
    trail = admin_api.get(
        f"{stack.registry_url}/v1/audit", params={"app_id": app_id, "limit": 2}, timeout=10
    ).json()["events"]
    assert [(event["action"], event["via"]) for event in trail] == [
        ("app.update", "page"),
        ("app.update", "api"),
    ]
    rows = page.locator("table", has_text="When (UTC)").locator("tbody tr")
    expect(rows.nth(0)).to_contain_text("on the page")
    expect(rows.nth(1)).to_contain_text("through the API")
    restored = admin_api.patch(
        f"{stack.registry_url}/v1/apps/{app_id}",
        json={"permissions": ["Machine.Read.All"], "rate_limit": {"per_minute": 100}},
        timeout=10,
    )
    assert restored.status_code == 200, restored.text


def test_an_expired_secret_is_flagged_and_gets_no_token(
    stack: Stack, admin_api: OAuth2Session, app_id: str, app_page: tuple[Page, Locator]
) -> None:
    url = f"{stack.registry_url}/v1/apps/{app_id}/secrets"
    soon = datetime.now(UTC) + timedelta(seconds=2)
    added = admin_api.post(url, json={"expires_at": soon.isoformat()}, timeout=10)
    assert added.status_code == 201, added.text
    secret = added.json()
    try:
        while datetime.now(UTC) <= soon:
            time.sleep(0.2)
        token = requests.post(
            f"{stack.registry_url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(app_id, secret["client_secret"]),
            timeout=10,
        )
        assert token.status_code == 401, token.text
        page, _ = app_page
        page.reload()
        row = page.locator(f'tr[data-secret-id="{secret["id"]}"]')
        expect(row.locator("td").nth(2)).to_contain_text("Expired")
        others = page.locator("#secrets-table tbody tr").filter(has_not_text="Expired")
        expect(others).to_have_count(1)
    finally:
        admin_api.delete(f"{url}/{secret['id']}", timeout=10)


def test_an_app_whose_last_secret_expires_soon_is_flagged_on_the_list_and_its_page(
    stack: Stack, context: BrowserContext, tenant: dict[str, str], admin_api: OAuth2Session
) -> None:
    created = admin_api.post(
        f"{stack.registry_url}/v1/apps",
        json={"name": f"Expiring {uuid.uuid4().hex[:6]}", "permissions": []},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    app = created.json()
    secrets = f"{stack.registry_url}/v1/apps/{app['id']}/secrets"
    [first] = admin_api.get(f"{stack.registry_url}/v1/apps/{app['id']}", timeout=10).json()[
        "secrets"
    ]
    page = context.new_page()
    sign_in(page, stack, tenant)
    page.goto(f"{stack.registry_url}/?name={app['name']}")
    row = page.locator(f'tr[data-app-id="{app["id"]}"]')
    expect(row).to_be_visible()
    expect(row.locator(".secrets-warning")).to_have_count(0)
    # Rotated onto a secret that lasts ten days: from now on both pages say so.
    soon = datetime.now(UTC) + timedelta(days=10)
    added = admin_api.post(secrets, json={"expires_at": soon.isoformat()}, timeout=10)
    assert added.status_code == 201, added.text
    assert admin_api.delete(f"{secrets}/{first['id']}", timeout=10).status_code == 204
    page.reload()
    expect(row.locator(".secrets-warning")).to_have_text(
        re.compile(r"^Secret expires in (9|10) days$")
    )
    row.get_by_role("link", name=app["name"]).click()
    expect(page.locator("#secrets-warning")).to_contain_text(
        "add a new secret and move the application over before then"
    )


def test_the_list_filters_by_name_and_status_and_sorts_by_a_column(
    stack: Stack, context: BrowserContext, oauth_session: SessionFactory
) -> None:
    owner = _create_tenant()
    api = oauth_session(owner["client_id"], owner["client_secret"])
    ids = {}
    for name in ("Backup agent", "SIEM bridge", "SIEM archive"):
        created = api.post(
            f"{stack.registry_url}/v1/apps", json={"name": name, "permissions": []}, timeout=10
        )
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]
    disabled = api.patch(
        f"{stack.registry_url}/v1/apps/{ids['SIEM archive']}", json={"enabled": False}, timeout=10
    )
    assert disabled.status_code == 200
    page = context.new_page()
    sign_in(page, stack, owner)
    names = page.locator("table.apps tbody tr td:first-child")
    expect(names).to_have_text(["Backup agent", "SIEM archive", "SIEM bridge"])

    page.get_by_label("Name contains").fill("siem")
    page.get_by_role("button", name="Apply").click()
    expect(names).to_have_text(["SIEM archive", "SIEM bridge"])
    expect(page.locator("#count")).to_have_text("2 of 3 applications match")
    page.get_by_label("Status").select_option("disabled")
    page.get_by_role("button", name="Apply").click()
    expect(names).to_have_text(["SIEM archive"])

    page.get_by_role("link", name="Clear filters").first.click()
    page.get_by_role("link", name="Application name").click()
    expect(names).to_have_text(["SIEM bridge", "SIEM archive", "Backup agent"])
    header = page.locator("th", has_text="Application name")
    expect(header).to_have_attribute("aria-sort", "descending")
    page.get_by_role("link", name="Status").click()
    expect(names.last).to_have_text("SIEM archive")  # enabled first, the disabled one last
