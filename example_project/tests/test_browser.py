"""The shop in headless Chromium against a live server, with JavaScript and without.

Uses Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin``); nothing here downloads a
browser. Without them the tests are skipped, unless ``CI`` is set: then they fail.
Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from shop.models import Order

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# No first-run work, no updates, no calls home: the machine may have no way out.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
]
WAIT_SECONDS = 10

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _unavailable() -> str | None:
    """Say what is missing to run a browser, or return None."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return f"{' and '.join(missing)} not found (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed"
    return None


def _start(javascript: bool) -> WebDriver:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    # An explicit driver path: Selenium must not look for (or download) one itself.
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Browser tests cannot run in CI: {reason}.")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browsers(browser_available: None, live_server: Any) -> Iterator[Callable[[bool], WebDriver]]:
    """Start at most one browser with JavaScript and one without, for the whole run.

    Depends on ``live_server`` so that the browsers quit first: a browser still holding
    keep-alive connections makes the server's threads fail at its shutdown.
    """
    started: dict[bool, WebDriver] = {}

    def get(javascript: bool) -> WebDriver:
        if javascript not in started:
            started[javascript] = _start(javascript)
        return started[javascript]

    yield get
    for driver in started.values():
        driver.quit()


class Shopper:
    """A browser pointed at the live server, with the few moves the tests need."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, selector: str) -> WebElement:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def find_all(self, selector: str) -> list[WebElement]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def text(self, selector: str) -> str:
        return self.find(selector).text

    def wait_for(self, condition: Callable[[], Any], message: str) -> None:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        # A page being replaced can lose an element between finding and reading it.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        wait = WebDriverWait(self.driver, WAIT_SECONDS, ignored_exceptions=ignored)
        wait.until(lambda _: condition(), message)

    def submit_and_wait(self, selector: str) -> None:
        """Click a button that posts its form, and wait for the next page."""
        old = self.find("html")
        self.find(selector).click()
        self.wait_for(lambda: _stale(old), f"no new page after clicking {selector}")

    def fill(self, selector: str, value: str) -> None:
        field = self.find(selector)
        field.clear()
        field.send_keys(value)

    def badge(self) -> str:
        return self.text("#cart-count")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.driver.save_screenshot(str(path))
        return path


def _stale(element: WebElement) -> bool:
    """Return True once ``element``'s page has been replaced by another."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.tag_name  # noqa: B018 - any access tells whether the page was replaced
    except StaleElementReferenceException:
        return True
    except WebDriverException:
        # Asked in the middle of the swap, Chromium may answer with a generic error
        # ("Node with given id does not belong to the document"): ask again.
        return False
    return False


def _shopper(driver: WebDriver, live_server: Any) -> Shopper:
    driver.get(live_server.url + "/")
    driver.delete_all_cookies()  # a new shopper: no session from an earlier test
    return Shopper(driver, live_server.url)


@pytest.fixture
def shopper(browsers: Callable[[bool], WebDriver], live_server: Any) -> Shopper:
    return _shopper(browsers(True), live_server)


@pytest.fixture
def shopper_without_js(browsers: Callable[[bool], WebDriver], live_server: Any) -> Shopper:
    return _shopper(browsers(False), live_server)


def test_add_reload_change_coupon_checkout(shopper: Shopper) -> None:
    shopper.open("/")
    assert "js" in (shopper.find("html").get_attribute("class") or "")
    shopper.driver.execute_script("window.stillThisPage = true")

    # With JavaScript, adding posts in the background and updates the badge in place. Two
    # quick clicks: both count.
    shopper.find("#product-sencha button").click()
    shopper.find("#product-glass-teapot button").click()
    shopper.wait_for(lambda: shopper.badge() == "2", "the badge did not count both adds")
    assert shopper.driver.execute_script("return window.stillThisPage") is True
    # The message shows beside the button pressed, not at the top of a scrolled page.
    assert shopper.text("#product-glass-teapot .add-status") == (
        "Added 1 × Glass teapot to your cart."
    )
    shopper.driver.execute_script("window.scrollTo(0, 0)")
    shopper.screenshot("catalog.png")

    shopper.driver.refresh()
    assert shopper.badge() == "2"
    shopper.open("/cart/")
    rows = shopper.find_all("tbody tr")
    assert [row.text.split("\n")[0] for row in rows] == ["Sencha", "Glass teapot"]

    sencha = "#" + (rows[0].get_attribute("id") or "")
    shopper.fill(f"{sencha} input[name=quantity]", "3")
    shopper.submit_and_wait(f"{sencha} button")
    assert shopper.badge() == "4"
    assert shopper.text("#subtotal") == "€55.40"  # 3 × 8.50 + 29.90

    shopper.fill("#id_code", "welcome10")
    shopper.submit_and_wait(".coupon-form button")
    assert "Coupon WELCOME10 applied." in shopper.text("#messages")
    assert shopper.text("#total") == "€49.86"  # 10 % off: 5.54
    shopper.screenshot("cart.png")

    shopper.open("/session/")
    assert shopper.text("#key-cart td[data-label=Type] > code") == "shop.cart.Cart"
    assert shopper.text("#key-coupons td[data-label=Type] > code") == "set"
    nested = shopper.text("#key-cart .nested")
    assert "shop.cart.LineItem" in nested and "decimal.Decimal" in nested
    shopper.screenshot("session.png")

    shopper.open("/cart/")
    shopper.submit_and_wait("a.button.primary")
    shopper.fill("#id_name", "Ada Lovelace")
    shopper.fill("#id_email", "ada@example.com")
    shopper.submit_and_wait("form.stacked button")
    assert "Thank you! Your order is placed." in shopper.text("#messages")
    assert shopper.text("#total") == "€49.86"
    assert shopper.badge() == "0"
    shopper.screenshot("order.png")
    order = Order.objects.get()
    assert (order.total, order.lines.count()) == (Decimal("49.86"), 2)


def test_every_step_works_without_javascript(shopper_without_js: Shopper) -> None:
    shopper = shopper_without_js
    shopper.open("/products/assam/")
    assert "js" not in (shopper.find("html").get_attribute("class") or "")
    shopper.fill("input[name=quantity]", "2")
    shopper.submit_and_wait(".add-form button")  # a plain post, then a redirect back
    assert shopper.badge() == "2"
    assert "Added 2 × Assam breakfast to your cart." in shopper.text("#messages")

    shopper.open("/cart/")
    shopper.fill("tbody input[name=quantity]", "5")
    shopper.submit_and_wait("tbody form button")
    assert shopper.badge() == "5"
    shopper.fill("#id_code", "TAKE5")
    shopper.submit_and_wait(".coupon-form button")
    assert shopper.text("#total") == "€27.50"  # 5 × 6.50 - 5.00

    shopper.submit_and_wait("a.button.primary")
    shopper.fill("#id_name", "Grace Hopper")
    shopper.fill("#id_email", "grace@example.com")
    shopper.submit_and_wait("form.stacked button")
    assert shopper.text("#total") == "€27.50"
    assert shopper.badge() == "0"
    assert Order.objects.get().total == Decimal("27.50")


PHONE_WIDTHS = (360, 390, 430)


def _overflow(shopper: Shopper) -> int:
    """Return how many pixels the page is wider than the window (0 when it fits)."""
    width: int = shopper.driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    return width


def test_every_page_fits_a_phone(shopper: Shopper) -> None:
    shopper.open("/products/sencha/")
    shopper.find(".add-form button").click()
    shopper.wait_for(lambda: shopper.badge() == "1", "the add did not count")
    shopper.open("/products/glass-teapot/")
    shopper.find(".add-form button").click()
    shopper.wait_for(lambda: shopper.badge() == "2", "the add did not count")
    shopper.open("/cart/")
    shopper.fill("#id_code", "WELCOME10")
    shopper.submit_and_wait(".coupon-form button")
    pages = ["/", "/products/sencha/", "/cart/", "/checkout/", "/session/", "/accounts/login/"]
    try:
        for width in PHONE_WIDTHS:
            shopper.driver.set_window_size(width, 800)
            for page in pages:
                shopper.open(page)
                assert _overflow(shopper) <= 0, f"{page} is wider than {width} px"
                # Every button is on screen, not beyond the right edge.
                for button in shopper.find_all("main button"):
                    right = button.rect["x"] + button.rect["width"]
                    assert right <= width, f"{button.text!r} on {page} ends at {right} px"
            if width == 390:
                shopper.open("/cart/")
                shopper.screenshot("cart-390.png")
                shopper.open("/session/")
                shopper.screenshot("session-390.png")
        # Still usable, not only tidy: change a quantity on the narrowest screen.
        shopper.driver.set_window_size(PHONE_WIDTHS[0], 800)
        shopper.open("/cart/")
        shopper.fill("tbody input[name=quantity]", "3")
        shopper.submit_and_wait("tbody form button")
        assert shopper.badge() == "4"
    finally:
        shopper.driver.set_window_size(1280, 900)


def _sign_in_in_another_tab(shopper: Shopper) -> None:
    """Open a second tab, sign in there, close it, and come back to the first tab."""
    first = shopper.driver.current_window_handle
    shopper.driver.switch_to.new_window("tab")
    shopper.open("/accounts/login/")
    shopper.fill("#id_username", "demo")
    shopper.fill("#id_password", "demo")
    shopper.submit_and_wait("main form button")
    assert "Signed in as demo" in shopper.text("#messages")
    shopper.driver.close()
    shopper.driver.switch_to.window(first)


def test_a_tab_opened_before_signing_in_still_adds(shopper: Shopper) -> None:
    shopper.open("/products/sencha/")
    token = shopper.find(".add-form input[name=csrfmiddlewaretoken]").get_attribute("value")
    _sign_in_in_another_tab(shopper)  # the login rotated the token this page holds

    shopper.find(".add-form button").click()
    shopper.wait_for(
        lambda: "Added 1 × Sencha" in shopper.text(".add-form .add-status"),
        "the stale page's add did not go through",
    )
    assert shopper.badge() == "1"
    fresh = shopper.find(".add-form input[name=csrfmiddlewaretoken]").get_attribute("value")
    assert fresh != token  # shop.js fetched the current token and retried


def test_a_tab_opened_before_signing_in_without_javascript(shopper_without_js: Shopper) -> None:
    shopper = shopper_without_js
    shopper.open("/products/sencha/")
    shopper.fill("input[name=quantity]", "2")
    _sign_in_in_another_tab(shopper)

    shopper.submit_and_wait(".add-form button")
    assert shopper.text("h1") == "This page was out of date"
    shopper.screenshot("stale-tab.png")
    shopper.submit_and_wait("form.retry button")  # the same add, with a fresh token
    assert "Added 2 × Sencha to your cart." in shopper.text("#messages")
    assert shopper.badge() == "2"
