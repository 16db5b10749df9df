"""Browser fixtures: Debian's chromium driven by Selenium through Debian's chromedriver, headless.

Nothing is downloaded: the chromedriver path is given, so Selenium Manager never runs. Chromium runs with a
fresh profile, no background networking, and a resolver that knows no host but this machine, so a page that
needs anything beyond the product shows it. Without Chromium these tests skip with a hint, except in CI
(CI=true), where they fail: CI installs Chromium and must run them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL_HINT = "Chromium is not installed; to run the browser tests: apt-get install -y chromium chromium-driver"

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1024",
    # Any host name but the live server's resolves to nothing: no CDN, no telemetry, no update check.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
]


def chromium_missing() -> list[str]:
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not (Path(path).is_file() and os.access(path, os.X_OK))]


@pytest.fixture
def browser(tmp_path, monkeypatch) -> Iterator:
    missing = chromium_missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{INSTALL_HINT} (missing: {', '.join(missing)}); CI must run the browser tests")
        pytest.skip(INSTALL_HINT)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: Selenium Manager may never fetch anything
    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    # The network events, so that a test can see every request a page made and how each was answered.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def inprocess(settings):
    """The in-process transport, driven by the test through `drain()` rather than by its thread."""
    settings.MESSAGING_TRANSPORT = "inprocess"
    settings.MESSAGING_INPROCESS_AUTOSTART = False
