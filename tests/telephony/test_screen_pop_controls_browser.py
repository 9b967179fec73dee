"""The screen pop's call controls in a real browser, on a workspace page, against the fake
Asterisk manager interface: the card pops while the phone rings, carries the controls once the
call is answered, and a click sends the AMI action."""

import pytest

from telephony.models import Call
from tests.telephony.fake_ami import as_the_pbx

pytest_plugins = ["tests.browser"]  # chromium, browser_page, expect, log_in
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

POP_BUDGET = 2_000  # ms: the card shows (or changes) within two seconds of the PBX's event
LEADS_LEG, ALICES_LEG = "PJSIP/sipnet-00000001", "PJSIP/201-00000002"


@pytest.fixture
def pbx(settings):
    """Asterisk with the CRM's hold and conference contexts, listing the call's two legs."""
    contexts = {"CONTEXT": "from-internal", "HOLD_CONTEXT": "crm-hold"}
    with as_the_pbx(settings, **contexts, CONFERENCE_CONTEXT="crm-conference") as server:
        server.channels = [
            {"Channel": LEADS_LEG, "Uniqueid": "1.1", "Linkedid": "call-1"},
            {"Channel": ALICES_LEG, "Uniqueid": "1.2", "Linkedid": "call-1"},
        ]
        yield server


@pytest.fixture
def alices_leads(browser_page, log_in, alice, bob, expect):
    """Alice's lead list in the workspace, open, with the screen pop running (bob is the
    colleague she can pass calls to)."""
    log_in(alice)
    browser_page.goto("/leads/")
    expect(browser_page.locator("#agent-state-value")).to_have_text("available")
    return browser_page


def test_a_call_pops_on_the_lead_list_and_hold_is_sent_to_the_pbx(
    pbx, alices_leads, calling_lead, ring, expect
):
    page = alices_leads
    card = page.locator(".screen-pop-card")

    ring("call.ringing")
    expect(card).to_be_visible(timeout=POP_BUDGET)
    expect(card.locator(".screen-pop-name")).to_have_text("Ivan Petrov")
    expect(card.locator(".screen-pop-controls")).to_have_count(0)

    ring("call.answered")
    controls = card.get_by_role("group", name="Call in progress")
    expect(controls).to_be_visible(timeout=POP_BUDGET)
    for name in ["Transfer", "Consult, then transfer", "Add a third party", "Hang up"]:
        expect(controls.get_by_role("button", name=name, exact=True)).to_be_enabled()

    controls.get_by_role("button", name="Hold").click()

    expect(card.get_by_role("status")).to_have_text("The call is on hold.")
    (redirect,) = pbx.actions_named("Redirect")
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"]) == (
        LEADS_LEG,
        "crm-hold",
        "hold",
    )
    assert (redirect["ExtraChannel"], redirect["ExtraExten"]) == (ALICES_LEG, "wait")
    resume = card.get_by_role("group", name="Call on hold").get_by_role("button", name="Resume")
    expect(resume).to_be_visible(timeout=POP_BUDGET)
    expect(page.locator("#agent-state-value")).to_have_text("on hold")
    transfer = card.get_by_role("button", name="Transfer", exact=True)
    expect(transfer).to_be_disabled()
    expect(transfer).to_have_attribute("title", "Take the call off hold first.")
    assert Call.objects.get().state == Call.State.ON_HOLD


def test_a_transfer_asks_for_the_colleague_by_name(pbx, alices_leads, calling_lead, ring, expect):
    card = alices_leads.locator(".screen-pop-card")
    ring("call.ringing")
    ring("call.answered")
    transfer = card.get_by_role("button", name="Transfer", exact=True)
    expect(transfer).to_be_enabled(timeout=POP_BUDGET)

    transfer.click()
    expect(transfer).to_have_attribute("aria-expanded", "true")
    form = card.locator("form.screen-pop-target:visible")
    form.get_by_label("Colleague").select_option(label="Bob Manager")
    form.get_by_role("button", name="Transfer now").click()

    expect(card.get_by_role("status")).to_have_text("The call is being transferred to Bob Manager.")
    (transfer_action,) = pbx.actions_named("BlindTransfer")
    assert (transfer_action["Channel"], transfer_action["Exten"]) == (ALICES_LEG, "202")


def test_what_the_pbx_cannot_do_is_disabled_with_the_reason_shown(
    pbx, settings, alices_leads, calling_lead, ring, expect
):
    settings.TELEPHONY_AMI_CONFERENCE_CONTEXT = ""
    card = alices_leads.locator(".screen-pop-card")
    ring("call.ringing")
    ring("call.answered")

    conference = card.get_by_role("button", name="Add a third party")
    expect(conference).to_be_disabled(timeout=POP_BUDGET)
    reason = (
        "Conference calls are off: the PBX has no conference context set up "
        "(TELEPHONY_AMI_CONFERENCE_CONTEXT); ask your administrator."
    )
    expect(conference).to_have_attribute("title", reason)
    expect(conference).to_have_accessible_description(reason)
    expect(card.locator(".screen-pop-reasons")).to_have_text(reason)


def test_do_not_disturb_from_the_card_is_the_away_switch_at_the_pbx(
    pbx, alices_leads, alice, calling_lead, ring, expect
):
    card = alices_leads.locator(".screen-pop-card")
    ring("call.ringing")
    ring("call.answered")
    dnd = card.get_by_role("button", name="Do not disturb")
    expect(dnd).to_have_attribute("aria-pressed", "false", timeout=POP_BUDGET)

    dnd.click()

    expect(dnd).to_have_attribute("aria-pressed", "true")
    expect(card.get_by_role("status")).to_have_text("You are away.")
    (put,) = pbx.actions_named("DBPut")
    assert (put["Family"], put["Key"], put["Val"]) == ("DND", "201", "YES")
