"""A real browser for the tests: Debian's chromium, driven by Playwright's sync API.

A test module that uses its fixtures (chromium, browser_page, expect, log_in) says
`pytest_plugins = ["tests.browser"]`.
Without chromium or Playwright the tests are skipped, and under CI=true they fail.

Playwright lives in a thread of its own. Its sync API marks an asyncio loop as running in the
thread that uses it, and Django then hands that thread other database connections (the ones
for async code) and refuses ORM calls; in its own thread it leaves the test's thread a plain
Django thread. `Remote` makes that invisible: every attribute and call of a Playwright object
runs in Playwright's thread, so a test reads like ordinary Playwright code.

Every wait is bounded: Playwright's default timeout is set on each page, launching has its
own, and no call into Playwright's thread may take longer than CALL_TIMEOUT.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePath

import pytest
from django.conf import settings

from tests.services import IN_CI

CHROMIUM = os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT = 30_000  # ms
TIMEOUT = 5_000  # ms: any action or wait that does not say otherwise
CALL_TIMEOUT = 60  # s: a backstop; Playwright's own timeouts end every call long before
PLAIN = (type(None), bool, int, float, str, bytes, dict, list, tuple, PurePath)


class Playwright:
    """The one thread that owns Playwright and the browser."""

    def __init__(self):
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")

    def call(self, function, /, *args, **kwargs):
        args, kwargs = _local(args), _local(kwargs)
        result = self._thread.submit(function, *args, **kwargs).result(timeout=CALL_TIMEOUT)
        return result if isinstance(result, PLAIN) else Remote(self, result)

    def close(self):
        self._thread.shutdown(wait=True, cancel_futures=True)


class Remote:
    """A Playwright object (page, locator, assertion...) seen from the test's thread."""

    __slots__ = ("_playwright", "_target")

    def __init__(self, playwright: Playwright, target):
        object.__setattr__(self, "_playwright", playwright)
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name):
        return self._playwright.call(getattr, self._target, name)

    def __call__(self, *args, **kwargs):
        return self._playwright.call(self._target, *args, **kwargs)

    def __repr__(self):
        return f"Remote({self._target!r})"


def _local(value):
    """Arguments as Playwright's thread needs them: its own objects, not their remotes."""
    if isinstance(value, Remote):
        return value._target
    if isinstance(value, tuple | list):
        return type(value)(_local(item) for item in value)
    if isinstance(value, dict):
        return {key: _local(item) for key, item in value.items()}
    return value


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason}, and CI requires it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium(live_server):
    """A headless chromium, closed with Playwright and its thread after the last test.

    It needs the live server so that it closes first: the server then finishes the browser's
    kept-alive connections while it still shares the test database's connection with them.
    """
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e .[dev])")

    playwright = Playwright()
    try:
        driver = playwright.call(lambda: sync_playwright().start())
        try:
            browser = driver.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=ARGS, timeout=LAUNCH_TIMEOUT
            )
            try:
                yield browser
            finally:
                browser.close()
        finally:
            driver.stop()
    finally:
        playwright.close()
        _wait_for_requests_to_finish()


def _wait_for_requests_to_finish():
    """The live server handles each connection in a thread: let those the browser left end."""
    for thread in threading.enumerate():
        if thread.name.endswith("(process_request_thread)"):
            thread.join(timeout=CALL_TIMEOUT)


@pytest.fixture
def browser_page(chromium, live_server):
    """A fresh page (own cookies and storage) on the live server, in English, Moscow time;
    a JavaScript error on it fails the test."""
    context = chromium.new_context(
        base_url=live_server.url,
        locale="en-US",
        timezone_id="Europe/Moscow",
        viewport={"width": 1280, "height": 800},
    )
    try:
        context.set_default_timeout(TIMEOUT)
        context.set_default_navigation_timeout(TIMEOUT * 2)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


@pytest.fixture
def expect(chromium):
    """Playwright's `expect`, run in Playwright's thread like everything else."""
    from playwright.sync_api import expect

    return Remote(chromium._playwright, expect)


@pytest.fixture
def log_in(browser_page, client, live_server):
    """log_in(user): give the page `user`'s session, as if they had logged in with the form."""

    def log_in(user):
        client.force_login(user)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        browser_page.context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
        )

    return log_in
