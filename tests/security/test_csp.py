"""A Content-Security-Policy on every page, and no page breaks it: each page in a real browser
(the admin's, the screen pop's, the outbox's sandboxed email, the public unsubscribe pages),
with every console message heard."""

from types import SimpleNamespace

import pytest
import time_machine
from django.urls import reverse

from nurture import rendering, tasks
from nurture.models import OutboundMessage, Sequence
from tests.telephony.fake_ami import as_the_pbx

pytest_plugins = ["tests.browser"]  # chromium, browser_page, expect, log_in
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def heard(browser_page):
    """What the browser reported: its console messages, and each page's policy header."""
    heard = SimpleNamespace(console=[], policies=[])
    browser_page.on("console", lambda message: heard.console.append(message.text))

    def policy_of(response):
        if response.request.resource_type == "document":
            policy = response.headers.get("content-security-policy")
            heard.policies.append((response.request.method, response.url, policy))

    browser_page.on("response", policy_of)
    return heard


def violations(heard):
    """What the browser refused, as Chromium says it: "Refused to execute inline script because
    it violates the following Content Security Policy directive: ..."."""
    return [text for text in heard.console if "Content Security Policy" in text]


def assert_kept_to_the_policy(heard):
    assert heard.policies, "no page was loaded"
    unprotected = [(method, url) for method, url, policy in heard.policies if not policy]
    assert not unprotected, f"pages without a Content-Security-Policy: {unprotected}"
    assert not violations(heard), f"the browser refused: {violations(heard)}"


@pytest.fixture
def pbx(settings):
    """Asterisk's manager interface, for the Call button."""
    with as_the_pbx(settings) as server:
        yield server


@pytest.fixture
def sent_email(nurtured_lead, smtp_server, eager_tasks):
    """The first email to Ivan (alice's lead), sent when it was due, with its HTML body."""
    enrollment = nurtured_lead.enrollments.get()
    with time_machine.travel(enrollment.next_send_at, tick=False):
        tasks.dispatch_due()
        smtp_server.handler.wait_for(1)
    message = OutboundMessage.objects.get(state=OutboundMessage.State.SENT)
    assert message.body_html
    return message


def test_the_login_page_and_the_lockout_page_keep_to_the_policy(browser_page, heard, expect, alice):
    def log_in_as_alice(password):
        browser_page.get_by_label("Username").fill("alice")
        browser_page.get_by_label("Password").fill(password)
        browser_page.get_by_role("button", name="Log in").click()

    browser_page.goto(reverse("admin:login"))
    for _ in range(4):
        log_in_as_alice("not her password")
        expect(browser_page.locator(".errornote")).to_contain_text("enter the correct username")
    log_in_as_alice("not her password")  # the fifth: locked out

    expect(browser_page.get_by_role("heading", name="Login locked")).to_be_visible()
    assert_kept_to_the_policy(heard)


def test_alices_admin_pages_keep_to_the_policy(
    browser_page, heard, expect, log_in, alice, sent_email, pbx
):
    lead = sent_email.enrollment.lead
    lead.phone_raw = "8 (916) 123-45-67"
    lead.save()
    log_in(alice)  # with a PBX extension: every page runs the screen pop

    browser_page.goto(reverse("admin:index"))
    expect(browser_page.locator("#agent-state-value")).to_have_text("available")
    browser_page.goto(reverse("admin:crm_lead_changelist"))
    expect(browser_page.locator("#result_list")).to_contain_text("ivan@client.example")
    browser_page.goto(reverse("admin:crm_lead_change", args=[lead.pk]))
    browser_page.get_by_role("button", name="Call +79161234567").click()
    expect(browser_page.locator(".messagelist")).to_contain_text("Calling +79161234567")
    expect(browser_page.locator(".screen-pop-card")).to_be_visible()  # her own call, ringing
    browser_page.goto(reverse("admin:nurture_outboundmessage_change", args=[sent_email.pk]))
    email = browser_page.frame_locator("iframe[srcdoc]").locator("body")
    expect(email).to_contain_text("Ivan, добрый день!")
    sequence = Sequence.objects.get(name="Дожимаем лида / Lead nurturing")
    browser_page.goto(
        reverse("admin:nurture_sequence_preview", args=[sequence.pk]) + f"?lead={lead.pk}"
    )
    expect(browser_page.frame_locator("iframe[srcdoc]").first.locator("body")).to_contain_text(
        "Ivan, добрый день!"
    )

    assert len(heard.policies) >= 6
    assert_kept_to_the_policy(heard)


def test_the_unsubscribe_pages_keep_to_the_policy(browser_page, heard, expect, sent_email):
    token = rendering.unsubscribe_token(sent_email.pk)
    browser_page.goto(reverse("nurture:unsubscribe", args=[token]))  # the link in the email
    browser_page.get_by_role("button").click()  # confirmed: unsubscribed

    expect(browser_page.get_by_role("button")).to_have_count(0)
    assert len(heard.policies) == 2
    assert_kept_to_the_policy(heard)


def test_an_inline_script_without_the_pages_nonce_is_refused(browser_page, heard):
    browser_page.goto(reverse("admin:login"))

    browser_page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.append(script);
        }"""
    )

    assert browser_page.evaluate("() => window.injected") is None
    assert violations(heard) and "script-src" in violations(heard)[0]
