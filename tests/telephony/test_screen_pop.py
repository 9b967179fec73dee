import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from crm import services as crm_services
from nurture.models import Enrollment
from telephony.calls.agents import state_of
from telephony.models import AgentState

SCREEN_POP = reverse("telephony:screen_pop")
AGENT_STATE = reverse("telephony:agent_state")
JSON = {"HTTP_ACCEPT": "application/json"}
NEXT_SEND = datetime(2025, 11, 27, 7, 0, tzinfo=UTC)  # Thursday 10:00 in Moscow


@pytest.fixture
def acme_caller_two_emails_in(calling_lead):
    """The nurtured lead with a phone, from Acme, two emails into nurturing."""
    calling_lead.company = "Acme"
    calling_lead.save()
    Enrollment.objects.filter(lead=calling_lead).update(sent_count=2, next_send_at=NEXT_SEND)
    return calling_lead


def cards_for(client, user):
    client.force_login(user)
    response = client.get(SCREEN_POP)
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    return response.json()["calls"]


def test_alice_sees_the_card_of_the_lead_calling_her(
    client, alice, acme_caller_two_emails_in, ring
):
    call = ring("call.ringing")

    (card,) = cards_for(client, alice)

    assert (card["id"], card["kind"], card["direction"]) == (call.pk, "lead", "in")
    assert card["number"] == "+7 916 123-45-67"
    lead = card["lead"]
    assert (lead["name"], lead["title"], lead["company"]) == ("Ivan Petrov", "Shop", "Acme")
    assert lead["status"] == "In progress"  # the call took the lead out of nurturing
    assert lead["url"] == reverse("admin:crm_lead_change", args=[acme_caller_two_emails_in.pk])
    texts = [activity["text"] for activity in lead["activities"]]
    assert texts == [
        "Status: Nurturing → In progress",
        "Incoming call",
        "Status: New → Nurturing",
        "Lead created",
    ]
    assert lead["nurture"].startswith("Stopped on ")
    assert lead["nurture"].endswith("after email 2 of 6: lead called")


def test_the_card_shows_the_next_email_while_nurturing_goes_on(
    client, alice, acme_caller_two_emails_in, ring
):
    # Alice dialled the lead: her phone rings first, and the lead stays nurtured.
    ring("call.ringing", direction="out", from_number="201", to_number="+79161234567")

    (card,) = cards_for(client, alice)

    assert card["kind"] == "lead"
    assert card["number"] == "+79161234567"
    assert card["lead"]["status"] == "Nurturing"
    assert card["lead"]["nurture"] == "Email 2 of 6 sent, next on Thu, 27 Nov, 10:00"


def test_the_card_shows_only_the_last_few_activities(client, alice, calling_lead, ring):
    for number in range(8):
        crm_services.record_activity(calling_lead, "note", f"Note {number}")
    ring("call.ringing")

    (card,) = cards_for(client, alice)

    assert len(card["lead"]["activities"]) == 5


def test_bob_sees_nothing_of_alices_call(client, alice, bob, calling_lead, ring):
    ring("call.ringing")

    assert cards_for(client, bob) == []


@pytest.mark.parametrize("event", ["call.transferred", "call.ended"])
def test_the_card_goes_once_the_call_is_passed_on_or_over(client, alice, calling_lead, ring, event):
    ring("call.ringing")
    ring(event)

    assert cards_for(client, alice) == []


def test_a_call_ringing_for_ages_lost_its_end_and_pops_nothing(client, alice, calling_lead, ring):
    ring("call.ringing")

    with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=False):
        assert len(cards_for(client, alice)) == 1
    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=False):
        assert cards_for(client, alice) == []


@pytest.mark.parametrize("pbx_clock_off", [timedelta(hours=3), -timedelta(hours=3)])
def test_a_pbx_clock_far_off_does_not_hide_the_card(
    client, alice, calling_lead, ring, pbx_clock_off
):
    """Whether the call still rings is judged by when its events reached the CRM: a PBX that
    sends Moscow time as UTC (three hours off) still pops the card."""
    ring("call.ringing", ago=pbx_clock_off)

    [card] = cards_for(client, alice)
    assert card["lead"]["id"] == calling_lead.pk


def test_internal_calls_pop_nothing(client, alice, bob, ring):
    ring("call.ringing", direction="internal", from_number="202", to_number="201")

    assert cards_for(client, alice) == []


def test_an_unknown_number_offers_to_create_a_lead_with_it(client, alice, ring):
    ring("call.ringing", from_number="8 903 111-22-33")

    (card,) = cards_for(client, alice)

    assert (card["kind"], card["lead"], card["number"]) == ("unknown", None, "8 903 111-22-33")
    assert card["create_url"] == reverse("admin:crm_lead_add") + "?phone_raw=%2B79031112233"
    form = client.get(card["create_url"])
    assert form.status_code == 200
    assert 'name="phone_raw" value="+79031112233"' in form.content.decode()


def test_several_leads_with_the_number_are_listed_to_choose_from(client, alice, make_lead, ring):
    first = make_lead(alice, phone_raw="+79161234567", first_name="Anna", email="a@x.example")
    second = make_lead(alice, phone_raw="89161234567", first_name="Boris", email="b@x.example")

    ring("call.ringing")

    (card,) = cards_for(client, alice)
    assert (card["kind"], card["lead"], card["create_url"]) == ("candidates", None, "")
    assert {candidate["id"] for candidate in card["candidates"]} == {first.pk, second.pk}
    assert {candidate["name"] for candidate in card["candidates"]} == {
        "Anna Petrov",
        "Boris Petrov",
    }


def test_a_manager_does_not_see_the_details_of_another_managers_lead(
    client, alice, bob, make_lead, ring
):
    make_lead(bob, phone_raw="+79161234567", company="Secret Corp", email="s@x.example")

    ring("call.ringing")

    (card,) = cards_for(client, alice)
    assert (card["kind"], card["lead"], card["candidates"]) == ("hidden", None, [])
    assert card["note"] == "The caller is a lead of Bob Manager."
    assert "Secret" not in json.dumps(card) and "Ivan" not in json.dumps(card)


def test_only_own_leads_are_offered_among_several(client, alice, bob, make_lead, ring):
    own = make_lead(alice, phone_raw="+79161234567", email="a@x.example")
    make_lead(bob, phone_raw="+79161234567", company="Secret Corp", email="s@x.example")

    ring("call.ringing")

    (card,) = cards_for(client, alice)
    assert card["kind"] == "candidates"
    assert [candidate["id"] for candidate in card["candidates"]] == [own.pk]
    assert card["note"] == "The caller is a lead of Bob Manager."
    assert "Secret" not in json.dumps(card)


def test_a_supervisor_sees_the_details_of_any_lead(client, alice, make_user, make_lead, ring):
    sam = make_user("sam", "Supervisors", extension="209")
    make_lead(alice, phone_raw="+79161234567", company="Acme")

    ring("call.ringing", extension="209")

    (card,) = cards_for(client, sam)
    assert card["kind"] == "lead"
    assert (card["lead"]["company"], card["lead"]["responsible"]) == ("Acme", "Alice Manager")


def test_the_screen_pop_takes_a_few_queries(
    client, alice, calling_lead, make_lead, ring, django_assert_max_num_queries
):
    ring("call.ringing")
    ring("call.ringing", call_id="call-2", from_number="+7 903 111-22-33")
    client.force_login(alice)

    # Session and user, the calls, their activities (with their status names), enrollments
    # and candidates, alice's permissions and her agent state: whatever the number of calls or
    # entries.
    with django_assert_max_num_queries(10):
        assert len(client.get(SCREEN_POP).json()["calls"]) == 2


def test_polling_while_nothing_rings_is_a_single_query_after_the_session(
    client, alice, django_assert_num_queries
):
    client.force_login(alice)

    with django_assert_num_queries(4):  # session, user, calls, agent state
        data = client.get(SCREEN_POP).json()

    assert data["calls"] == []
    assert data["agent"] == {
        "state": "available",
        "label": "available",
        "away": False,
        "changed_at": None,
    }


def test_anonymous_scripts_get_403_to_stop_polling_and_browsers_the_login_page(client):
    assert client.get(SCREEN_POP, **JSON).status_code == 403
    assert client.get(AGENT_STATE, **JSON).status_code == 403
    assert (
        client.post(AGENT_STATE, {"away": True}, content_type="application/json").status_code == 403
    )

    assert client.get(SCREEN_POP).url.startswith(reverse("login"))
    assert client.post(AGENT_STATE, {"away": "true"}).url.startswith(reverse("login"))


def test_alice_sets_herself_away_and_back(client, alice, settings):
    settings.TELEPHONY_AMI_HOST = settings.TELEPHONY_CLICK_TO_CALL_URL = ""  # no PBX
    client.force_login(alice)

    assert client.get(AGENT_STATE).json()["state"] == "available"
    response = client.post(AGENT_STATE, {"away": True}, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["state"] == "away" and response.json()["away"] is True
    assert state_of(alice).state == AgentState.State.AWAY

    response = client.post(AGENT_STATE, {"away": False}, content_type="application/json")
    assert response.json() == {
        "state": "available",
        "label": "available",
        "away": False,
        "changed_at": state_of(alice).changed_at.isoformat(),
        "pbx": False,
        "message": "You are back. The PBX was not told: No PBX is configured: click-to-call "
        "and call control are off.",
    }


@pytest.mark.parametrize("body", ['{"away": "yes"}', "[]", "not json", "{}"])
def test_a_bad_agent_state_request_is_refused(client, alice, body):
    client.force_login(alice)

    response = client.post(AGENT_STATE, body, content_type="application/json")

    assert response.status_code == 400
    assert state_of(alice).away is False


def test_setting_the_agent_state_needs_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get(reverse("admin:index"))
    token = page.cookies["csrftoken"].value

    refused = client.post(AGENT_STATE, {"away": True}, content_type="application/json")
    accepted = client.post(
        AGENT_STATE, {"away": True}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert state_of(alice).away is True


def test_admin_pages_of_a_manager_with_an_extension_load_the_screen_pop(client, alice, olga):
    client.force_login(alice)
    page = client.get(reverse("admin:index")).content.decode()
    assert "telephony/screen_pop.js" in page
    assert 'id="agent-state"' in page
    assert "<title>Configuration | Nurture CRM</title>" in page
    config = page.split('<script type="application/json" id="screen-pop-config">')[1]
    config = json.loads(config.split("</script>")[0])
    assert config["urls"] == {"screenPop": SCREEN_POP, "agentState": AGENT_STATE}
    assert config["strings"]["createLead"] == "Create a lead"

    # Nobody calls olga: no extension, no polling.
    client.force_login(olga)
    page = client.get(reverse("admin:index")).content.decode()
    assert "telephony/screen_pop.js" not in page and 'id="agent-state"' not in page


def test_a_supervisor_sees_every_agent_state_and_a_manager_her_own(client, alice, bob, olga):
    state_of(alice), state_of(bob)
    changelist = reverse("admin:telephony_agentstate_changelist")

    client.force_login(olga)
    page = client.get(changelist).content.decode()
    assert "Alice Manager" in page and "Bob Manager" in page

    client.force_login(alice)
    page = client.get(changelist).content.decode()
    assert "Alice Manager" in page and "Bob Manager" not in page


def test_alice_sets_herself_away_in_the_admin_too_but_not_bob(client, alice, bob):
    hers, his = state_of(alice), state_of(bob)
    client.force_login(alice)

    response = client.post(
        reverse("admin:telephony_agentstate_change", args=[hers.pk]), {"away": "on"}
    )
    bobs_page = client.get(reverse("admin:telephony_agentstate_change", args=[his.pk]))

    assert response.status_code == 302
    assert state_of(alice).state == AgentState.State.AWAY
    assert bobs_page.status_code == 404  # as if it did not exist
