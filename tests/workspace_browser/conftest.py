"""Pages of the workspace in a real browser, watched: every request, console message and
JavaScript error on them is recorded, and when the test ends none may have left the live
server or been an error.

The browser itself (`chromium`, `expect`) comes from tests/browser.py, which each test module
here loads with `pytest_plugins` (pytest allows that only in test modules and the root
conftest).
"""

import json
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from telephony.calls.signatures import sign
from tests.telephony.conftest import call_event, webhook_json

# Written on every run, for people to look at (ignored by git).
SCREENSHOTS = Path(__file__).resolve().parents[1] / "browser" / "screenshots"
AXE = Path(__file__).resolve().parents[1] / "browser" / "vendor" / "axe.min.js"
WIDTHS = (1280, 390)
LOCALES = {"en": "en-US", "ru": "ru-RU"}
WEBHOOK_SECRET = "pbx-browser-secret"
TIMEOUT = 5_000  # ms: any action or wait that does not say otherwise, as in tests/browser.py


class Watched:
    """What happened on a browser page."""

    def __init__(self, page, base_url):
        self.base_url = base_url
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message):
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def problems(self) -> list[str]:
        outside = [url for url in self.requests if not url.startswith(self.base_url + "/")]
        return (
            [f"request outside the test server: {url}" for url in outside]
            + [f"console error: {text}" for text in self.console_errors]
            + [f"JavaScript error: {text}" for text in self.page_errors]
        )


@pytest.fixture
def open_page(chromium, live_server, client):
    """open_page(user=None, language="en", width=1280, for_axe=False) -> a new page in a
    context of its own (Moscow time), signed in as `user` if given. `for_axe` lets the test
    inject axe-core, an inline script the pages' Content Security Policy would refuse."""
    contexts, watched = [], []

    def open_page(user=None, *, language="en", width=1280, for_axe=False):
        context = chromium.new_context(
            base_url=live_server.url,
            locale=LOCALES[language],
            timezone_id="Europe/Moscow",
            viewport={"width": width, "height": 800},
            bypass_csp=for_axe,
        )
        contexts.append(context)
        context.set_default_timeout(TIMEOUT)
        context.set_default_navigation_timeout(TIMEOUT * 2)
        if user is not None:
            client.force_login(user)
            session = client.cookies[settings.SESSION_COOKIE_NAME].value
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
            )
        page = context.new_page()
        watched.append(Watched(page, live_server.url))
        return page

    yield open_page
    try:
        problems = [problem for watcher in watched for problem in watcher.problems()]
        assert not problems, "\n".join(problems)
    finally:
        for context in contexts:
            context.close()


def screenshot(page, name: str) -> None:
    """The whole page as tests/browser/screenshots/<name>-<width>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)


def sideways_scroll(page) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def serious_axe_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page, one line per element."""
    page.add_script_tag(path=AXE)
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))}))"""
    )
    return [
        f"{violation['id']} ({violation['help']}): {node}"
        for violation in violations
        for node in violation["nodes"]
    ]


@pytest.fixture
def pbx_event(live_server, settings):
    """pbx_event(type, **fields): the PBX posts a signed call event (call_event's defaults: from
    +7 916 123-45-67 to alice's extension 201, happening now) to the webhook."""
    import urllib.request

    from django.utils import timezone

    settings.TELEPHONY_WEBHOOK_SECRETS = [WEBHOOK_SECRET]
    url = live_server.url + reverse("telephony:events")

    def post(type, **fields):
        body = json.dumps(webhook_json(call_event(type, at=timezone.now(), **fields))).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Timestamp": timestamp,
                "X-Signature": sign(WEBHOOK_SECRET, timestamp, body),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert response.status == 200

    return post
