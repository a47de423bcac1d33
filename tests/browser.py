"""Driving the system's headless Chromium (Debian `chromium` + `chromium-driver`) with
Selenium, for the web UI tests. Nothing is downloaded: both binaries' paths are given."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

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
T = TypeVar("T")


def chromium_binaries() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def start_chromium(profile_dir: Path) -> Chrome:
    binaries = chromium_binaries()
    assert binaries is not None, "chromium and chromedriver must be installed"
    chromium, driver = binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
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

    def severe_console_errors(self) -> list[str]:
        """Script errors since the last call (the API's expected 4xx answers excluded)."""
        entries = self.driver.get_log("browser")  # type: ignore[no-untyped-call]  # untyped
        return [
            str(e["message"]) for e in entries if "Failed to load resource" not in str(e["message"])
        ]
