"""Headless Chromium for page tests (Debian's ``chromium`` and ``chromium-driver``).

One browser per test session (starting Chromium costs about a second); tests that need a
clean slate call :func:`reset_browser` (cookies of every site visited, storage) first.
Outside CI a missing Chromium or chromedriver skips, saying why; with ``CI=true`` it fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_CANDIDATES = ("chromedriver",)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def _find(
    names: tuple[str, ...], extra_dirs: tuple[str, ...] = ("/usr/lib/chromium",)
) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for d in extra_dirs:
            candidate = Path(d) / name
            if candidate.exists() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def _missing(reason: str) -> None:
    from tests.conftest import missing

    missing(reason)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A selenium WebDriver for headless Chromium with a fresh profile."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        _missing(f"selenium is not installed: {exc}")
    binary = _find(CHROMIUM_CANDIDATES)
    driver_path = _find(DRIVER_CANDIDATES)
    if binary is None or driver_path is None:
        _missing("Chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    assert binary is not None and driver_path is not None
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path_factory.getbasetemp())
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as exc:
        _missing(f"Chromium did not start: {exc.msg}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def reset_browser(driver: Any) -> None:
    """Forget every cookie (all sites) and cached state, so a test starts signed out."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.get("about:blank")
