"""A headless Chromium driven by Selenium, for the tests that open the explorer page.

Without selenium, Chromium or chromedriver the tests that use `browser` skip, saying
which is missing; with CNNGRAPH_REQUIRE_BROWSER=1 (CI sets it) they fail instead, so a
CI without a browser is red rather than quietly green.
"""
from __future__ import annotations

import os
import shutil

import pytest

WINDOW = (1366, 768)  # a laptop screen
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def missing(reason: str):
    """Skip the test, or fail it where the browser is required."""
    if os.environ.get("CNNGRAPH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CNNGRAPH_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium WebDriver with a 1366x768 window whose console log is kept
    (``browser.get_log("browser")``)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed: pip install -e '.[test]' brings it")
    chromium = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None:
        missing("no Chromium on PATH (Debian: apt-get install chromium)")
    if driver_path is None:
        missing("no chromedriver on PATH (Debian: apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    """The SEVERE entries of the browser's console since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
