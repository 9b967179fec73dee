"""The screen pop in a real browser: the caller's card on a manager's admin page."""

import pytest

from telephony.calls.agents import state_of

pytest_plugins = ["tests.browser"]  # chromium, browser_page, expect, log_in
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

POP_BUDGET = 2_000  # ms: the card shows (or goes) within two seconds of the PBX's event


@pytest.fixture
def alices_admin(browser_page, log_in, alice, expect):
    """Alice's admin index, open, with the screen pop running."""
    log_in(alice)
    browser_page.goto("/admin/")
    expect(browser_page.locator("#agent-state-value")).to_have_text("available")
    return browser_page


def test_the_callers_card_pops_on_alices_page_and_goes_when_the_call_ends(
    alices_admin, calling_lead, ring, expect, tmp_path
):
    card = alices_admin.locator(".screen-pop-card")

    ring("call.ringing")

    expect(card).to_be_visible(timeout=POP_BUDGET)
    expect(card.locator(".screen-pop-name")).to_have_text("Ivan Petrov")
    expect(card).to_contain_text("Shop")
    expect(card).to_contain_text("Incoming call")
    expect(card).to_contain_text("before the first email: lead called")
    expect(alices_admin.locator("#agent-state-value")).to_have_text("ringing")
    alices_admin.screenshot(path=tmp_path / "screen-pop.png")

    ring("call.answered")

    expect(card.locator(".screen-pop-controls")).to_be_visible(timeout=POP_BUDGET)
    expect(alices_admin.locator("#agent-state-value")).to_have_text("busy (on a call)")

    ring("call.ended")

    expect(card).to_have_count(0, timeout=POP_BUDGET)


def test_an_unknown_number_pops_a_link_to_create_the_lead(alices_admin, ring, expect):
    ring("call.ringing", from_number="8 903 111-22-33")

    create = alices_admin.get_by_role("link", name="Create a lead")
    expect(create).to_be_visible(timeout=POP_BUDGET)
    create.click()

    expect(alices_admin.locator("#id_phone_raw")).to_have_value("+79031112233")


def test_a_dismissed_card_stays_away_while_the_call_rings(alices_admin, calling_lead, ring, expect):
    card = alices_admin.locator(".screen-pop-card")
    ring("call.ringing")
    expect(card).to_be_visible(timeout=POP_BUDGET)

    card.get_by_role("button", name="Dismiss").click()
    expect(card).to_have_count(0)
    alices_admin.reload()
    expect(alices_admin.locator("#agent-state-value")).to_have_text("ringing")

    expect(card).to_have_count(0)


def test_alice_sets_herself_away_from_the_header(alices_admin, alice, expect, settings):
    settings.TELEPHONY_AMI_HOST = settings.TELEPHONY_CLICK_TO_CALL_URL = ""  # no PBX
    alices_admin.get_by_role("button", name="Set away").click()

    expect(alices_admin.locator("#agent-state-value")).to_have_text("away / do not disturb")
    expect(alices_admin.locator("#agent-state")).to_have_attribute(
        "title",
        "You are away. The PBX was not told: No PBX is configured: click-to-call and call "
        "control are off.",
    )
    assert state_of(alice).away is True
    alices_admin.get_by_role("button", name="I’m back").click()
    expect(alices_admin.locator("#agent-state-value")).to_have_text("available")
    assert state_of(alice).away is False


def test_the_card_goes_and_polling_stops_when_alice_is_logged_out(
    alices_admin, client, calling_lead, ring, expect
):
    card = alices_admin.locator(".screen-pop-card")
    ring("call.ringing")
    expect(card).to_be_visible(timeout=POP_BUDGET)

    client.logout()  # the page shares this session: it ends for the page too

    expect(card).to_have_count(0, timeout=POP_BUDGET)
