"""Driving the system's headless Chromium (Debian `chromium` + `chromium-driver`) with
Selenium, for the web UI tests. Nothing is downloaded: both binaries' paths are given."""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
# The machine's network is closed, and a test browser has no business calling home.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
# The API's own 4xx/5xx answers (a 401 before the key dialog, a 413 upload) are expected;
# any other resource that fails to load (a JS module, a stylesheet) is a broken page.
EXPECTED_API_ERROR = re.compile(
    r"/api/\S* - Failed to load resource: the server responded with a status of [45]\d\d"
)
T = TypeVar("T")


def chromium_binaries() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def running_in_ci(environ: dict[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in ("1", "true", "yes")


def require_chromium() -> None:
    """Skip when Chromium is missing on a developer's machine; fail under CI=true, where a
    missing browser means the suite would pass without testing the UI at all."""
    if chromium_binaries() is not None:
        return
    why = "chromium and chromedriver are missing (`make browser` installs them as root)"
    if running_in_ci():
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def start_chromium(profile_dir: Path, extra_flags: tuple[str, ...] = ()) -> Chrome:
    binaries = chromium_binaries()
    assert binaries is not None, "chromium and chromedriver must be installed"
    chromium, driver = binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    return webdriver.Chrome(options=options, service=Service(driver))


class Page:
    """One web server's UI in the shared browser, with waits that fail with context."""

    def __init__(self, driver: Chrome, base_url: str, timeout: float = 20.0) -> None:
        self.driver = driver
        self.base_url = base_url
        self.timeout = timeout

    def open(self, route: str) -> None:
        """Load the page at a hash route, e.g. "#/upload" (a full load, fresh JS state)."""
        self.driver.get(f"{self.base_url}/{route}")

    def go(self, route: str) -> None:
        """Move to a route within the loaded page, as a click on a link would."""
        self.driver.execute_script("location.hash = arguments[0]", route)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_until(self, condition: Callable[[], T | None], what: str, timeout: float = 0) -> T:
        def check(_: Chrome) -> T | Literal[False]:
            try:
                result = condition()
            except (NoSuchElementException, StaleElementReferenceException):
                return False  # the page is re-rendering: look again
            return False if result is None else result

        wait = WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.1)
        return wait.until(check, f"waited for {what}")

    def wait_for(self, css: str, text: str = "", timeout: float = 0) -> WebElement:
        """The first visible element matching `css` whose text contains `text`."""

        def visible() -> WebElement | None:
            for element in self.find_all(css):
                if element.is_displayed() and text in element.text:
                    return element
            return None

        return self.wait_until(visible, f"{css} showing {text!r}", timeout)

    def wait_gone(self, css: str) -> None:
        self.wait_until(
            lambda: not any(e.is_displayed() for e in self.find_all(css)) or None, f"{css} gone"
        )

    def screenshot(self, name: str) -> Path:
        """The whole page, below the fold included (Chromium's DevTools capture)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def leave(self) -> list[str]:
        """Unload the UI (its status page keeps polling) before its servers stop; returns
        severe_console_errors() up to that point."""
        errors = self.severe_console_errors()
        self.driver.get("about:blank")
        return errors

    def severe_console_errors(self) -> list[str]:
        """Severe console entries since the last call, the API's expected error answers
        excluded (a missing script or stylesheet is kept)."""
        entries = self.driver.get_log("browser")  # type: ignore[no-untyped-call]  # untyped
        return unexpected_console_errors(str(e["message"]) for e in entries)


def unexpected_console_errors(messages: Iterable[str]) -> list[str]:
    return [m for m in messages if not EXPECTED_API_ERROR.search(m)]
