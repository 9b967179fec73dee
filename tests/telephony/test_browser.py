"""The screen pop in a real browser: the caller's card on a manager's admin page."""

import pytest
from django.utils import timezone

from crm import services as crm_services
from telephony.agents import state_of
from telephony.calls import CallEventData, apply_event

pytest_plugins = ["tests.browser"]  # chromium, browser_page, expect, log_in
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

POP_BUDGET = 2_000  # ms: the card shows (or goes) within two seconds of the PBX's event


@pytest.fixture
def ring():
    """Apply a call event now, committed, as the PBX webhook would."""
    counter = iter(range(1, 10_000))

    def apply(type, *, call_id="call-1", **fields):
        fields.setdefault("direction", "in")
        fields.setdefault("from_number", "+7 916 123-45-67")
        fields.setdefault("to_number", "+7 495 000-00-00")
        fields.setdefault("extension", "201")
        event = CallEventData(
            event_id=f"{call_id}-{next(counter)}",
            type=type,
            call_id=call_id,
            occurred_at=timezone.now(),
            **fields,
        )
        return apply_event("pbx", event)

    return apply


@pytest.fixture
def alices_admin(browser_page, log_in, alice, expect):
    """Alice's admin index, open, with the screen pop running."""
    log_in(alice)
    browser_page.goto("/admin/")
    expect(browser_page.locator("#agent-state-value")).to_have_text("available")
    return browser_page


def test_the_callers_card_pops_on_alices_page_and_goes_when_she_answers(
    alices_admin, alice, make_lead, ring, expect, tmp_path
):
    lead = make_lead(alice, phone_raw="8 (916) 123-45-67", company="Acme")
    crm_services.change_status(lead, "nurturing", by=alice)
    card = alices_admin.locator(".screen-pop-card")

    ring("call.ringing")

    expect(card).to_be_visible(timeout=POP_BUDGET)
    expect(card.locator(".screen-pop-name")).to_have_text("Ivan Petrov")
    expect(card).to_contain_text("Acme")
    expect(card).to_contain_text("Incoming call")
    expect(card).to_contain_text("before the first email: lead called")
    expect(alices_admin.locator("#agent-state-value")).to_have_text("ringing")
    alices_admin.screenshot(path=tmp_path / "screen-pop.png")

    ring("call.answered")

    expect(card).to_have_count(0, timeout=POP_BUDGET)
    expect(alices_admin.locator("#agent-state-value")).to_have_text("busy (on a call)")


def test_an_unknown_number_pops_a_link_to_create_the_lead(alices_admin, ring, expect):
    ring("call.ringing", from_number="8 903 111-22-33")

    create = alices_admin.get_by_role("link", name="Create a lead")
    expect(create).to_be_visible(timeout=POP_BUDGET)
    create.click()

    expect(alices_admin.locator("#id_phone_raw")).to_have_value("+79031112233")


def test_a_dismissed_card_stays_away_while_the_call_rings(
    alices_admin, alice, make_lead, ring, expect
):
    make_lead(alice, phone_raw="8 (916) 123-45-67")
    card = alices_admin.locator(".screen-pop-card")
    ring("call.ringing")
    expect(card).to_be_visible(timeout=POP_BUDGET)

    card.get_by_role("button", name="Dismiss").click()
    expect(card).to_have_count(0)
    alices_admin.reload()
    expect(alices_admin.locator("#agent-state-value")).to_have_text("ringing")

    expect(card).to_have_count(0)


def test_alice_sets_herself_away_from_the_header(alices_admin, alice, expect):
    alices_admin.get_by_role("button", name="Set away").click()

    expect(alices_admin.locator("#agent-state-value")).to_have_text("away / do not disturb")
    assert state_of(alice).away is True
    alices_admin.get_by_role("button", name="I’m back").click()
    expect(alices_admin.locator("#agent-state-value")).to_have_text("available")
    assert state_of(alice).away is False


def test_the_card_goes_and_polling_stops_when_alice_is_logged_out(
    alices_admin, alice, client, make_lead, ring, expect
):
    make_lead(alice, phone_raw="8 (916) 123-45-67")
    card = alices_admin.locator(".screen-pop-card")
    ring("call.ringing")
    expect(card).to_be_visible(timeout=POP_BUDGET)

    client.logout()  # the page shares this session: it ends for the page too

    expect(card).to_have_count(0, timeout=POP_BUDGET)
