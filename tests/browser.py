"""Headless Chromium for the browser tests (Selenium): Debian's `chromium` + `chromium-driver`, or any Chrome with a
matching chromedriver on PATH. Without them a test skips with a message saying what to install, except where
`MINI_REQUIRE_BROWSER=1` (set by .ci/run, which installs them): there a missing or broken browser fails the test,
so CI cannot go green with the browser tests silently skipped."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

INSTALL_HINT = "install chromium chromium-driver (apt-get) to run the browser test"


def _unavailable(reason: str) -> None:
    if os.environ.get("MINI_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (MINI_REQUIRE_BROWSER=1: the browser tests must run here)")
    pytest.skip(reason)


def _first_on_path(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


@contextmanager
def chromium(
    profile_dir: Path, *, page_load_timeout: float, console_logs: bool = False
) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile in `profile_dir`), quit afterwards; skips the test if there
    is none. `console_logs`: keep the page's console messages (`driver.get_log("browser")`)."""
    binary = _first_on_path("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
    driver_path = _first_on_path("/usr/bin/chromedriver", "chromedriver")
    if binary is None or driver_path is None:
        missing = " and ".join(
            n for n, p in (("chromium", binary), ("chromedriver", driver_path)) if p is None
        )
        _unavailable(f"{missing} not found: {INSTALL_HINT}")
    options = Options()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(arg)
    if console_logs:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:  # a broken install: say so instead of failing obscurely
        _unavailable(f"chromium did not start ({type(exc).__name__}: {exc}); {INSTALL_HINT}")
    try:
        driver.set_page_load_timeout(page_load_timeout)
        yield driver
    finally:
        driver.quit()
