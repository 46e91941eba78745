"""A real headless Chromium for the page's browser tests, driven by Playwright for Python.

Playwright's own browser download cannot run here, so the tests drive Debian's `chromium`
through `executable_path`, installing the package with apt-get when it is missing.
"""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
APT_TIMEOUT_S = 900


def find_chromium() -> str | None:
    """The Chromium executable named by CHROMIUM_PATH or found on PATH."""
    chosen = os.environ.get("CHROMIUM_PATH")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def install_chromium() -> str:
    """Install Debian's `chromium` package (the tests run as root on the CI machine)."""
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(
            command,
            check=False,
            capture_output=True,
            text=True,
            env=apt_env,
            timeout=APT_TIMEOUT_S,
        )
        if done.returncode != 0:
            pytest.fail(
                f"Chromium is missing and `{' '.join(command)}` failed:\n{done.stderr[-2000:]}",
                pytrace=False,
            )
    found = find_chromium()
    if found is None:
        pytest.fail("apt-get installed chromium, yet no chromium is on PATH", pytrace=False)
    return found


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, installed when missing; never a silent skip."""
    return find_chromium() or install_chromium()


# Module scope, not session: a running sync Playwright holds an event loop on this thread,
# which would stop every asyncio test that runs after it.
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    """One Playwright driver per test module."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright, chromium_path: str) -> Iterator[Browser]:
    """Headless Chromium launched from the Debian package."""
    launched = playwright_driver.chromium.launch(executable_path=chromium_path, headless=True)
    try:
        yield launched
    finally:
        launched.close()
