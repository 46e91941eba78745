"""The browser tooling itself works: Debian's Chromium runs, and axe-core finds a real fault."""

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser


def test_axe_in_chromium_reports_an_unlabelled_field(browser: Browser) -> None:
    page = browser.new_page()
    try:
        page.set_content(
            '<html lang="en"><title>t</title><main><h1>Form</h1>'
            '<label for="named">Name</label><input id="named"><input id="bare"></main></html>'
        )
        found = Axe().run(page)
    finally:
        page.close()
    rules = {violation["id"] for violation in found.response["violations"]}
    assert rules == {"label"}
