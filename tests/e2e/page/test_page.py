"""The Connected applications page in a real headless Chromium, against the running stack.

A tenant admin signs in, registers an app, reads its secret once, and the app calls the
gateway for real; the page must show exactly what the admin API reports, and what the admin
changes in the page must be enforced by the gateway. Screenshots of both pages on that real
data go to .local/screenshots/, or to the folder CAPPS_SCREENSHOT_DIR names (`docs` refreshes
the README's pictures), so an ordinary run leaves the work tree clean.
"""

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import SessionFactory, _create_tenant
from tests.infra import Stack

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO_ROOT / os.environ.get("CAPPS_SCREENSHOT_DIR", ".local/screenshots")
DEADLINE_S = 60.0
# Within a second is the goal; the deadline is generous so a busy machine fails nothing.
ENFORCE_DEADLINE_S = 30.0
T = TypeVar("T")


def until(read: Callable[[], T], done: Callable[[T], bool], deadline_s: float = DEADLINE_S) -> T:
    """Call `read` until `done` holds for what it returns; the last value either way."""
    give_up = time.monotonic() + deadline_s
    while True:
        value = read()
        if done(value) or time.monotonic() > give_up:
            return value
        time.sleep(0.1)


def sign_in(page: Page, stack: Stack, tenant: dict[str, str]) -> None:
    """Sign in through the form, as an admin would."""
    page.goto(f"{stack.registry_url}/")
    expect(page).to_have_url(re.compile(re.escape(f"{stack.registry_url}/signin")))
    page.get_by_label("Client ID").fill(tenant["client_id"])
    page.get_by_label("Client secret").fill(tenant["client_secret"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Connected applications")).to_be_visible()


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page, one line each."""
    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['nodes'][0]['html'][:120]}"
        for v in found
        if v.get("impact") in ("serious", "critical")
    ]


def token_of(stack: Stack, client_id: str, secret: str) -> requests.Response:
    """The token endpoint's answer for these app credentials."""
    return requests.post(
        f"{stack.registry_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )


def call(stack: Stack, token: str, path: str, method: str = "GET") -> requests.Response:
    """One call of the partner app through the gateway."""
    return requests.request(
        method,
        f"{stack.gateway_url}{path}",
        headers={"Authorization": f"Bearer {token}"},
        json={} if method == "POST" else None,
        timeout=10,
    )


@pytest.fixture(scope="module")
def tenant() -> dict[str, str]:
    """A new tenant's admin client credentials."""
    return _create_tenant()


@pytest.fixture(scope="module")
def admin_api(tenant: dict[str, str], oauth_session: SessionFactory) -> OAuth2Session:
    """The same tenant admin on the admin API: what the page must agree with."""
    return oauth_session(tenant["client_id"], tenant["client_secret"])


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test."""
    opened = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield opened
    finally:
        opened.close()


def register_in_page(page: Page, name: str, permissions: list[str]) -> tuple[str, str]:
    """Register an app through the form; (app id, the secret shown once)."""
    page.get_by_role("link", name="Register application").click()
    page.get_by_label("Name", exact=True).fill(name)
    for permission in permissions:
        page.get_by_label(permission, exact=True).check()
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name=f"{name} is registered")).to_be_visible()
    expect(page.get_by_text("shown only this once")).to_be_visible()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    return page.locator("#client-id").inner_text(), page.get_by_label("Client secret").input_value()


def api_app(admin_api: OAuth2Session, stack: Stack, app_id: str) -> dict[str, Any]:
    """The app as the admin API reports it."""
    answer = admin_api.get(f"{stack.registry_url}/v1/apps/{app_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@dataclass(frozen=True, slots=True)
class Scenario:
    """The admin's browser page, the same admin on the API, and the app under management."""

    page: Page
    stack: Stack
    admin_api: OAuth2Session
    app_id: str
    secret: str

    def api_app(self) -> dict[str, Any]:
        """The app as the admin API reports it now."""
        return api_app(self.admin_api, self.stack, self.app_id)

    def call(self, token: str, path: str, method: str = "GET") -> requests.Response:
        """One call of the app through the gateway."""
        return call(self.stack, token, path, method)

    def until_status(self, token: str, path: str, status: int) -> requests.Response:
        """Call the gateway until it answers `status` (generous deadline, no elapsed check)."""
        return until(
            lambda: self.call(token, path), lambda r: r.status_code == status, ENFORCE_DEADLINE_S
        )


def test_an_admin_manages_an_app_in_the_page_and_the_gateway_follows(
    stack: Stack,
    context: BrowserContext,
    tenant: dict[str, str],
    admin_api: OAuth2Session,
) -> None:
    page = context.new_page()
    sign_in(page, stack, tenant)

    # Register; the secret is on this answer only, and works at the token endpoint.
    app_id, secret = register_in_page(
        page, "SIEM connector", ["Alert.Read.All", "Machine.Read.All", "AdvancedQuery.Read.All"]
    )
    assert secret
    token_answer = token_of(stack, app_id, secret)
    assert token_answer.status_code == 200, token_answer.text
    token = token_answer.json()["access_token"]
    page.get_by_role("link", name="Continue to SIEM connector").click()
    assert secret not in page.content()
    page.goto(f"{stack.registry_url}/")
    scenario = Scenario(page, stack, admin_api, app_id, secret)

    # A second app with a little traffic, so the list shows more than one row.
    other_id, other_secret = register_in_page(page, "Ticketing sync", ["Alert.Read.All"])
    other_token = token_of(stack, other_id, other_secret).json()["access_token"]
    assert call(stack, other_token, "/api/alerts").status_code == 200
    until(lambda: api_app(admin_api, stack, other_id), lambda a: a["requests_24h"] >= 1)

    page_shows_what_the_api_reports(scenario, token)
    app_page_breakdowns_match_the_api(scenario)
    unused_permission_removed_in_one_click(scenario)
    removed_permission_is_refused(scenario, token)
    scenario = secret_rotated(scenario)
    fresh = disabled_then_enabled(scenario, token)
    deleted_and_refused(scenario, fresh)
    expect(page.locator(f'tr[data-app-id="{other_id}"]')).to_have_count(1)


def page_shows_what_the_api_reports(scenario: Scenario, token: str) -> None:
    """Real calls through the gateway; the list and the app page show the API's numbers."""
    page, stack = scenario.page, scenario.stack
    # 3 + 2 allowed, 1 refused for want of the permission: all six carry a valid token.
    statuses = [scenario.call(token, "/api/alerts").status_code for _ in range(3)]
    statuses += [scenario.call(token, "/api/machines").status_code for _ in range(2)]
    statuses.append(scenario.call(token, "/api/indicators", "POST").status_code)
    assert statuses == [200, 200, 200, 200, 200, 403]
    expected = len(statuses)
    reported = until(scenario.api_app, lambda a: a["requests_24h"] >= expected)
    assert reported["requests_24h"] == expected

    page.goto(f"{stack.registry_url}/")
    row = page.locator(f'tr[data-app-id="{scenario.app_id}"]')
    expect(row).to_be_visible()
    assert int(row.locator("td.requests-24h").inner_text().replace(",", "")) == expected
    seen = row.locator("td.last-seen time")
    assert seen.get_attribute("datetime") == iso_seconds(reported["last_seen"])
    assert seen.get_attribute("title") == utc_words(reported["last_seen"])
    total_30d = sum(day["requests"] for day in reported["trend_30d"])
    expect(row.locator("td.trend svg")).to_have_attribute(
        "aria-label", f"{total_30d:,} requests in 30 days"
    )
    assert serious_violations(page) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "page-list.png", full_page=True)

    row.get_by_role("link", name="SIEM connector").click()
    expect(page.get_by_role("heading", name="SIEM connector", level=1)).to_be_visible()
    assert page.locator("#app-requests-24h").inner_text() == f"{expected:,}"
    assert page.locator("#app-last-seen time").get_attribute("datetime") == iso_seconds(
        reported["last_seen"]
    )
    today = reported["trend_30d"][-1]
    expect(page.locator("#trend-chart rect title").last).to_have_text(
        f"{today['date']}: {today['requests']:,} requests"
    )
    assert serious_violations(page) == []
    page.screenshot(path=SCREENSHOTS / "page-app.png", full_page=True)


def api_json(scenario: Scenario, path: str) -> dict[str, Any]:
    """A GET of the admin API under the app, as JSON."""
    url = f"{scenario.stack.registry_url}/v1/apps/{scenario.app_id}{path}"
    answer = scenario.admin_api.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def table_rows(page: Page, table: str) -> list[list[str]]:
    """The text of each body row's cells (th and td) of a table."""
    rows: list[list[str]] = page.locator(f"{table} tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    return rows


def app_page_breakdowns_match_the_api(scenario: Scenario) -> None:
    """Status classes, routes, unused permissions and the 24 h total: the API's figures."""
    page = scenario.page
    days = api_json(scenario, "/usage?granularity=day")["points"]
    status = {row[0]: int(row[1].replace(",", "")) for row in table_rows(page, "#status-table")}
    for label, field in (
        ("2xx success", "status_2xx"),
        ("3xx redirect", "status_3xx"),
        ("4xx client error", "status_4xx"),
        ("of which denied (401/403)", "denied"),
        ("of which throttled (429)", "throttled"),
        ("5xx server error", "status_5xx"),
        ("All calls", "requests"),
    ):
        assert status[label] == sum(point[field] for point in days), label
    routes = api_json(scenario, "/usage/routes?days=30")
    shown = table_rows(page, "#routes-table") if routes["routes"] else []
    assert shown == [
        [
            f"{route['method']} {route['route']}",
            route["permission"] or "none",
            f"{route['requests']:,}",
            f"{route['errors']:,}",
        ]
        for route in routes["routes"]
    ]
    flagged = page.locator("#permissions li").filter(has_text="Not used in 30 days")
    assert sorted(t.split()[0] for t in flagged.all_inner_texts()) == routes["unused_permissions"]
    since = (datetime.now(UTC) - timedelta(hours=23, minutes=58)).strftime("%Y-%m-%dT%H:%M:00Z")
    minutes = api_json(scenario, f"/usage?granularity=minute&from={since}")["points"]
    expect(page.get_by_role("heading", name="Requests per minute, last 24 hours")).to_contain_text(
        f"({sum(point['requests'] for point in minutes):,} in all)"
    )


def unused_permission_removed_in_one_click(scenario: Scenario) -> None:
    """A permission never called is flagged; one click takes it away."""
    page = scenario.page
    assert (
        "AdvancedQuery.Read.All"
        in api_json(scenario, "/usage/routes?days=30")["unused_permissions"]
    )
    page.get_by_role("button", name="Remove AdvancedQuery.Read.All").click()
    expect(page.get_by_text("Permission removed.")).to_be_visible()
    assert "AdvancedQuery.Read.All" not in scenario.api_app()["permissions"]


def secret_rotated(scenario: Scenario) -> Scenario:
    """Add a second secret (shown once), use it, delete the first: the first stops working."""
    page, stack = scenario.page, scenario.stack
    first = scenario.api_app()["secrets"]
    assert len(first) == 1
    # The new secret works for 90 days: an admin who rotates on a schedule says so once.
    page.get_by_label("Expires").select_option(label="in 90 days")
    asked_at = datetime.now(UTC)
    page.get_by_role("button", name="Add a secret").click()
    expect(page.get_by_role("heading", name="New secret for SIEM connector")).to_be_visible()
    expect(page.get_by_text("shown only this once")).to_be_visible()
    second = page.get_by_label("Client secret").input_value()
    assert second
    assert second != scenario.secret
    assert token_of(stack, scenario.app_id, second).status_code == 200
    page.get_by_role("link", name="Continue to SIEM connector").click()
    assert second not in page.content()
    secrets = scenario.api_app()["secrets"]
    assert len(secrets) == 2
    [added] = [secret for secret in secrets if secret["id"] != first[0]["id"]]
    expires = datetime.fromisoformat(added["expires_at"])
    assert abs(expires - (asked_at + timedelta(days=90))) < timedelta(minutes=5)
    assert first[0]["expires_at"] is None
    rows = page.locator("#secrets-table tbody tr")
    expect(rows).to_have_count(2)
    expires_cell = page.locator(f'tr[data-secret-id="{added["id"]}"] td:nth-child(3) time')
    expect(expires_cell).to_have_text(re.compile(r"^in (89|90) days$"))
    assert expires_cell.get_attribute("datetime") == iso_seconds(added["expires_at"])
    for secret in secrets:
        used = page.locator(f'tr[data-secret-id="{secret["id"]}"] td.last-used time')
        assert used.get_attribute("datetime") == iso_seconds(secret["last_used_at"])
    page.get_by_role("button", name=f"Delete secret ending {first[0]['hint']}").click()
    expect(page.get_by_text("The secret was deleted.")).to_be_visible()
    expect(rows).to_have_count(1)
    assert [s["id"] for s in scenario.api_app()["secrets"]] != [first[0]["id"]]
    assert token_of(stack, scenario.app_id, scenario.secret).status_code == 401
    assert token_of(stack, scenario.app_id, second).status_code == 200
    return Scenario(page, stack, scenario.admin_api, scenario.app_id, second)


def removed_permission_is_refused(scenario: Scenario, token: str) -> None:
    """Untick a permission in the form; the gateway refuses its route moments later."""
    page = scenario.page
    edit = page.locator("#edit-form")
    edit.get_by_label("Machine.Read.All", exact=True).uncheck()
    edit.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Changes saved")).to_be_visible()
    assert scenario.api_app()["permissions"] == ["Alert.Read.All"]
    refused = scenario.until_status(token, "/api/machines", 403)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert scenario.call(token, "/api/alerts").status_code == 200
    # The change is in the app's audit trail and marked on the trend chart.
    expect(page.locator("#audit-table tbody tr").first).to_contain_text(
        "permissions removed Machine.Read.All"
    )
    expect(page.locator("#trend-chart .marker title")).to_contain_text("removed Machine.Read.All")


def disabled_then_enabled(scenario: Scenario, token: str) -> str:
    """Disable: the gateway refuses the app; enable: a new token works. The new token."""
    page = scenario.page
    page.get_by_role("button", name="Disable application").click()
    expect(page.get_by_text("The application is disabled")).to_be_visible()
    assert scenario.api_app()["enabled"] is False
    disabled = scenario.until_status(token, "/api/alerts", 403)
    assert disabled.json()["error"]["code"] == "app_disabled"
    page.get_by_role("button", name="Enable application").click()
    expect(page.get_by_text("The application is enabled")).to_be_visible()
    assert scenario.api_app()["enabled"] is True
    fresh: str = token_of(scenario.stack, scenario.app_id, scenario.secret).json()["access_token"]
    assert scenario.until_status(fresh, "/api/alerts", 200).status_code == 200
    return fresh


def deleted_and_refused(scenario: Scenario, token: str) -> None:
    """Delete after a confirmation naming the app: gone from the list, its token refused."""
    page, stack = scenario.page, scenario.stack
    page.get_by_label("Type SIEM connector to confirm").fill("SIEM")
    page.get_by_role("button", name="Delete SIEM connector").click()
    expect(page.get_by_text("type the application's name, SIEM connector, exactly")).to_be_visible()
    assert scenario.api_app()["enabled"] is True
    page.goto(f"{stack.registry_url}/apps/{scenario.app_id}")
    page.get_by_label("Type SIEM connector to confirm").fill("SIEM connector")
    page.get_by_role("button", name="Delete SIEM connector").click()
    expect(page.get_by_text("The application was deleted")).to_be_visible()
    expect(page.locator(f'tr[data-app-id="{scenario.app_id}"]')).to_have_count(0)
    gone = scenario.admin_api.get(f"{stack.registry_url}/v1/apps/{scenario.app_id}", timeout=10)
    assert gone.status_code == 404
    assert scenario.until_status(token, "/api/alerts", 401).status_code == 401
    assert token_of(stack, scenario.app_id, scenario.secret).status_code == 401


def iso_seconds(rfc3339: str) -> str:
    """The API's last_seen as the page's `datetime` attribute: UTC to the second."""
    return datetime.fromisoformat(rfc3339).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_words(rfc3339: str) -> str:
    """The API's last_seen as the exact time the page shows on hover."""
    return datetime.fromisoformat(rfc3339).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
