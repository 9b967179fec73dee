"""Click-to-call, hang-up, transfers, hold, conference and the away switch (do-not-disturb at
the PBX), and the controls the screen pop offers for each PBX, against a fake AMI server
replaying Asterisk's answers and a real HTTP server on loopback."""

import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from crm.models import Activity, LeadStatus
from telephony.calls import connectors, services
from telephony.calls.agents import state_of
from telephony.models import Call
from tests.telephony import fake_ami
from tests.telephony.conftest import call_event
from tests.telephony.fake_ami import as_the_pbx

JSON = {"HTTP_ACCEPT": "application/json"}
AGENT_STATE = reverse("telephony:agent_state")


@pytest.fixture
def ami_server(settings):
    with as_the_pbx(settings, CONTEXT="from-internal", CHANNEL_TECH="PJSIP") as server:
        yield server


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"headers": dict(self.headers), "json": json.loads(body)})
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args):
        pass


@pytest.fixture
def http_pbx(settings):
    """A cloud PBX's click-to-call endpoint on loopback that records what it got."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.requests, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.TELEPHONY_AMI_HOST = ""
    settings.TELEPHONY_CLICK_TO_CALL_URL = f"http://127.0.0.1:{server.server_port}/calls"
    settings.TELEPHONY_CLICK_TO_CALL_TOKEN = "cloud-token"
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def no_pbx(settings):
    settings.TELEPHONY_AMI_HOST = ""
    settings.TELEPHONY_CLICK_TO_CALL_URL = ""


def client_for(user, **options):
    client = Client(**options)
    client.force_login(user)
    return client


def dial(client, lead, **extra):
    return client.post(reverse("telephony:click_to_call", args=[lead.pk]), **extra)


@pytest.fixture
def live_call(alice, calling_lead):
    """Alice on the phone with her lead, placed from the CRM."""
    return services.place_outbound_call(alice, calling_lead, "201", "+79161234567")


@pytest.fixture
def channels_of(ami_server):
    def put(call, extension="201"):
        ami_server.channels = [
            {"Channel": "PJSIP/202-00000001", "Uniqueid": "9.1", "Linkedid": "9.1"},
            {"Channel": f"PJSIP/{extension}-00000020", "Uniqueid": call.call_id},
            {"Channel": "PJSIP/sipnet-00000021", "Uniqueid": "9.21"},
        ]
        for channel in ami_server.channels[1:]:
            channel["Linkedid"] = call.call_id

    return put


# --- click-to-call over AMI ---------------------------------------------------------------


def test_click_to_call_rings_the_manager_then_the_lead_and_logs_an_outbound_call(
    ami_server, alice, calling_lead
):
    response = dial(client_for(alice), calling_lead, follow=True)

    (originate,) = ami_server.actions_named("Originate")
    call = Call.objects.get()
    assert originate["Channel"] == "PJSIP/201"
    assert (originate["Context"], originate["Exten"]) == ("from-internal", "+79161234567")
    assert (originate["Priority"], originate["Async"]) == ("1", "true")
    assert originate["CallerID"] == '"Ivan Petrov" <+79161234567>'
    assert f"CRM_LEAD_ID={calling_lead.pk}" in originate["Variable"]
    assert originate["ChannelId"] == call.call_id
    assert (call.source, call.direction, call.state) == ("crm", "out", Call.State.RINGING)
    assert (call.agent, call.lead, call.extension) == (alice, calling_lead, "201")
    assert calling_lead.activities.get(kind=Activity.Kind.CALL).summary == "Outgoing call"
    assert response.redirect_chain[-1][0] == reverse(
        "admin:crm_lead_change", args=[calling_lead.pk]
    )
    assert "Calling +79161234567" in response.content.decode()
    calling_lead.refresh_from_db()
    assert calling_lead.status.code == LeadStatus.NURTURING


def test_click_to_call_answers_json_to_a_script(ami_server, alice, calling_lead):
    response = dial(client_for(alice), calling_lead, **JSON)

    assert response.status_code == 200
    call = Call.objects.get()
    assert response.json() == {
        "ok": True,
        "message": "Calling +79161234567: pick up your phone when it rings.",
        "call": {
            "id": call.pk,
            "call_id": call.call_id,
            "direction": "out",
            "state": "ringing",
            "lead": calling_lead.pk,
            "extension": "201",
            "number": "+79161234567",
        },
    }


def test_a_call_the_pbx_refuses_is_ended_with_the_reason(ami_server, alice, calling_lead):
    ami_server.errors["Originate"] = "Extension does not exist."

    response = dial(client_for(alice), calling_lead, **JSON)

    assert response.status_code == 502
    assert response.json()["error"] == "The PBX refused: Extension does not exist."
    call = Call.objects.get()
    assert call.state == Call.State.MISSED
    assert call.hangup_cause == "The PBX refused: Extension does not exist."
    assert state_of(alice).state == "available"


def test_an_unreachable_pbx_is_reported_at_once(settings, alice, calling_lead):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.TELEPHONY_AMI_HOST, settings.TELEPHONY_AMI_PORT = "127.0.0.1", port

    response = dial(client_for(alice), calling_lead, **JSON)

    assert response.status_code == 504
    assert response.json()["error"] == "The PBX cannot be reached: the connection was refused"


def test_a_pbx_that_does_not_answer_times_out(settings, alice, calling_lead, monkeypatch):
    monkeypatch.setattr(connectors, "TIMEOUT", 0.2)
    with socket.socket() as silent:  # accepts connections (the backlog) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings.TELEPHONY_AMI_HOST = "127.0.0.1"
        settings.TELEPHONY_AMI_PORT = silent.getsockname()[1]

        response = dial(client_for(alice), calling_lead, **JSON)

    assert response.status_code == 504
    assert "no answer in" in response.json()["error"]


def test_a_wrong_ami_secret_is_a_refusal(ami_server, settings, alice, calling_lead):
    settings.TELEPHONY_AMI_SECRET = "not it"

    response = dial(client_for(alice), calling_lead, **JSON)

    assert response.json()["error"] == ("The PBX refused: the CRM's AMI login was not accepted")
    assert ami_server.refused_logins == 1


# --- refusals before anything is dialled -----------------------------------------------------


def test_no_pbx_configured_is_a_clear_refusal(no_pbx, alice, calling_lead):
    response = dial(client_for(alice), calling_lead, **JSON)

    assert response.status_code == 503
    assert response.json()["error"].startswith("No PBX is configured")
    assert not Call.objects.exists()


def test_a_manager_without_an_extension_cannot_dial(ami_server, olga, calling_lead):
    response = dial(client_for(olga), calling_lead, follow=True)

    assert "Olga Manager has no PBX extension" in response.content.decode()
    assert not ami_server.actions and not Call.objects.exists()


def test_a_lead_without_a_phone_number_cannot_be_dialled(ami_server, alice, make_lead):
    lead = make_lead(alice, phone_raw="")

    response = dial(client_for(alice), lead, **JSON)

    assert (response.status_code, response.json()["error"]) == (
        400,
        "The lead has no valid phone number.",
    )
    assert not ami_server.actions


def test_a_manager_cannot_dial_another_managers_lead(ami_server, bob, calling_lead):
    response = dial(client_for(bob), calling_lead)

    assert response.status_code == 404
    assert not ami_server.actions and not Call.objects.exists()


def test_call_control_is_post_only_for_logged_in_users_with_a_csrf_token(
    ami_server, alice, calling_lead
):
    url = reverse("telephony:click_to_call", args=[calling_lead.pk])
    assert client_for(alice).get(url).status_code == 405
    assert Client().post(url).status_code == 302  # to the login page
    assert Client().post(url, **JSON).status_code == 403
    assert client_for(alice, enforce_csrf_checks=True).post(url).status_code == 403
    assert not ami_server.actions


# --- hang up, transfer ----------------------------------------------------------------------


def test_hangup_hangs_up_the_managers_channel_of_that_call(
    ami_server, alice, live_call, channels_of
):
    channels_of(live_call)

    response = client_for(alice).post(reverse("telephony:hangup", args=[live_call.pk]), **JSON)

    assert response.status_code == 200
    assert [action["Action"] for action in ami_server.actions] == ["CoreShowChannels", "Hangup"]
    hangup = ami_server.actions[-1]
    assert (hangup["Channel"], hangup["Cause"]) == ("PJSIP/201-00000020", "16")


def test_hanging_up_a_call_the_pbx_no_longer_has_is_refused(ami_server, alice, live_call):
    response = client_for(alice).post(reverse("telephony:hangup", args=[live_call.pk]), **JSON)

    assert (response.status_code, response.json()["error"]) == (
        409,
        "The PBX has no such call any more.",
    )
    assert not ami_server.actions_named("Hangup")


def test_transfer_blind_transfers_the_managers_channel(ami_server, alice, live_call, channels_of):
    channels_of(live_call)

    response = client_for(alice).post(
        reverse("telephony:transfer", args=[live_call.pk]), {"to": "202"}, follow=True
    )

    (transfer,) = ami_server.actions_named("BlindTransfer")
    assert transfer["Channel"] == "PJSIP/201-00000020"
    assert (transfer["Context"], transfer["Exten"]) == ("from-internal", "202")
    assert "transferred to 202" in response.content.decode()


def test_without_the_managers_channel_transfer_redirects_the_other_party(
    ami_server, alice, live_call, channels_of
):
    channels_of(live_call, extension="203")  # the manager's leg is not on the PBX

    client_for(alice).post(reverse("telephony:transfer", args=[live_call.pk]), {"to": "202"})

    (redirect,) = ami_server.actions_named("Redirect")
    assert redirect["Channel"] == "PJSIP/sipnet-00000021"
    assert (redirect["Exten"], redirect["Priority"]) == ("202", "1")


def test_transfer_needs_an_extension(ami_server, alice, live_call):
    response = client_for(alice).post(
        reverse("telephony:transfer", args=[live_call.pk]), {"to": "2 0; 2"}, **JSON
    )

    assert response.status_code == 400
    assert not ami_server.actions


def test_a_manager_cannot_control_another_managers_call(ami_server, bob, live_call):
    client = client_for(bob)

    assert client.post(reverse("telephony:hangup", args=[live_call.pk])).status_code == 404
    assert client.post(reverse("telephony:transfer", args=[live_call.pk])).status_code == 404
    assert not ami_server.actions


def test_an_ended_call_cannot_be_hung_up(ami_server, alice, live_call):
    Call.objects.filter(pk=live_call.pk).update(state=Call.State.ENDED)

    response = client_for(alice).post(reverse("telephony:hangup", args=[live_call.pk]), **JSON)

    assert (response.status_code, response.json()["error"]) == (409, "This call is over.")


# --- the away switch ------------------------------------------------------------------------


def set_away(client, away, **extra):
    return client.post(AGENT_STATE, {"away": away}, content_type="application/json", **extra)


def test_away_is_do_not_disturb_at_the_pbx(ami_server, alice):
    client = client_for(alice)

    on = set_away(client, True)
    assert on.json() == {
        "state": "away",
        "label": "away / do not disturb",
        "away": True,
        "changed_at": state_of(alice).changed_at.isoformat(),
        "pbx": True,
        "message": "You are away.",
    }
    assert state_of(alice).away

    ami_server.errors["DBDel"] = "Database entry not found"  # off when it was never on is off
    off = set_away(client, False)
    assert (off.json()["pbx"], off.json()["message"]) == (True, "You are back.")
    assert not state_of(alice).away

    put, delete = ami_server.actions
    assert (put["Action"], put["Family"], put["Key"], put["Val"]) == ("DBPut", "DND", "201", "YES")
    assert (delete["Action"], delete["Family"], delete["Key"]) == ("DBDel", "DND", "201")


def test_a_pbx_refusing_dnd_leaves_the_manager_away_and_says_why(ami_server, alice):
    ami_server.errors["DBPut"] = "Failed to update entry"

    answer = set_away(client_for(alice), True).json()

    assert (answer["state"], answer["pbx"]) == ("away", False)
    assert answer["message"] == (
        "You are away. The PBX was not told: The PBX refused: Failed to update entry"
    )
    assert state_of(alice).away


def test_away_without_a_pbx_still_sets_the_manager_away(no_pbx, alice):
    answer = set_away(client_for(alice), True).json()

    assert (answer["away"], answer["pbx"]) == (True, False)
    assert answer["message"].startswith("You are away. The PBX was not told: No PBX is configured")
    assert state_of(alice).away


def test_a_manager_without_an_extension_is_away_in_the_crm_only(ami_server, olga):
    answer = set_away(client_for(olga), True).json()

    assert answer["pbx"] is False
    assert "Olga Manager has no PBX extension" in answer["message"]
    assert state_of(olga).away and not ami_server.actions


def test_a_form_post_sets_away_and_goes_back_with_the_message(no_pbx, alice):
    client = client_for(alice)
    lead_page = reverse("admin:crm_lead_changelist")

    response = client.post(AGENT_STATE, {"away": "1", "next": lead_page}, follow=True)

    assert response.redirect_chain[-1][0] == lead_page
    assert "You are away. The PBX was not told: No PBX is configured" in response.content.decode()
    assert state_of(alice).away
    back = client.post(AGENT_STATE, {"away": "false", "next": "https://elsewhere.example/"})
    assert back.url == reverse("admin:index")  # not to another site
    assert not state_of(alice).away


def test_a_form_post_without_a_clear_away_is_refused(no_pbx, alice):
    response = client_for(alice).post(AGENT_STATE, {"away": "maybe"}, follow=True)

    assert "Send “away”: true or false." in response.content.decode()
    assert not state_of(alice).away


# --- the HTTP connector --------------------------------------------------------------------


def test_the_http_connector_posts_the_call_with_the_bearer_token(http_pbx, alice, calling_lead):
    response = dial(client_for(alice), calling_lead, **JSON)

    assert response.status_code == 200
    (request,) = http_pbx.requests
    call = Call.objects.get()
    assert request["headers"]["Authorization"] == "Bearer cloud-token"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["json"] == {
        "extension": "201",
        "number": "+79161234567",
        "lead_id": calling_lead.pk,
        "call_id": call.call_id,
    }
    assert (call.direction, call.lead) == ("out", calling_lead)


def test_the_http_connector_reports_the_endpoints_refusal(http_pbx, alice, calling_lead):
    http_pbx.status = 500

    response = dial(client_for(alice), calling_lead, **JSON)

    assert response.json()["error"] == "The PBX refused: HTTP 500 from the click-to-call address"


def test_the_http_connector_cannot_hang_up_or_transfer(http_pbx, alice, live_call):
    client = client_for(alice)

    hangup = client.post(reverse("telephony:hangup", args=[live_call.pk]), **JSON)
    transfer = client.post(
        reverse("telephony:transfer", args=[live_call.pk]), {"to": "202"}, **JSON
    )

    assert (hangup.status_code, hangup.json()["error"]) == (
        501,
        "This PBX connection cannot hang up calls.",
    )
    assert transfer.json()["error"] == "This PBX connection cannot transfer calls."
    assert not http_pbx.requests


# --- the lead page -------------------------------------------------------------------------


def test_the_lead_page_has_a_call_button_and_the_leads_calls(ami_server, alice, live_call):
    page = client_for(alice).get(reverse("admin:crm_lead_change", args=[live_call.lead.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert f'action="{reverse("telephony:click_to_call", args=[live_call.lead.pk])}"' in html
    assert "Call +79161234567" in html
    assert f'action="{reverse("telephony:hangup", args=[live_call.pk])}"' in html
    assert "Calls in progress" in html
    (calls,) = [i for i in page.context["inline_admin_formsets"] if i.opts.model is Call]
    assert [form.original for form in calls] == [live_call]


def test_the_call_button_is_off_without_a_pbx(no_pbx, alice, calling_lead):
    page = client_for(alice).get(reverse("admin:crm_lead_change", args=[calling_lead.pk]))

    assert "No PBX is configured" in page.content.decode()


def test_the_new_lead_page_still_renders(ami_server, alice):
    assert client_for(alice).get(reverse("admin:crm_lead_add")).status_code == 200


# --- the controls on the screen pop ------------------------------------------------------------

SCREEN_POP = reverse("telephony:screen_pop")
# The call recorded in ami_transcripts/inbound_answered.txt, as far as it has got in
# in_progress_channels.txt (CoreShowChannels while it is on): the lead's leg on the trunk and
# alice's phone, bridged; bob's call on another Linkedid.
RECORDED_CALL_ID = "1763974800.1"
LEADS_LEG, ALICES_LEG = "PJSIP/sipnet-00000001", "PJSIP/201-00000002"


@pytest.fixture
def dialplan(settings):
    """The hold and conference contexts an Asterisk admin adds (README "Calls")."""
    settings.TELEPHONY_AMI_HOLD_CONTEXT = "crm-hold"
    settings.TELEPHONY_AMI_CONFERENCE_CONTEXT = "crm-conference"


@pytest.fixture
def call_in_progress(ami_server, dialplan, alice, bob, calling_lead, apply):
    """The lead on the phone with alice, as the AMI listener recorded it; the PBX lists the
    call's channels as Asterisk did."""
    ami_server.channels = fake_ami.channels("in_progress_channels.txt")
    ringing, answered = apply(
        call_event("call.ringing", call_id=RECORDED_CALL_ID, at=timezone.now()),
        call_event("call.answered", call_id=RECORDED_CALL_ID, at=timezone.now()),
        source="ami",
    )
    return answered


def post_control(user, name, call, data=None):
    return client_for(user).post(
        reverse(f"telephony:{name}", args=[call.pk]),
        data or {},
        content_type="application/json",
        **JSON,
    )


def card_of(user, call):
    data = client_for(user).get(SCREEN_POP).json()
    (card,) = [card for card in data["calls"] if card["id"] == call.pk]
    return card, data


def controls(card):
    return {control["name"]: control for control in card["controls"]}


def test_the_card_of_a_call_in_progress_carries_every_control(alice, bob, call_in_progress):
    card, data = card_of(alice, call_in_progress)

    assert card["state"] == "answered"
    assert [c["name"] for c in card["controls"]] == [
        "hold",
        "transfer",
        "attended_transfer",
        "conference",
        "dnd",
        "hangup",
    ]
    assert all(c["enabled"] and not c["reason"] for c in card["controls"])
    hold = controls(card)["hold"]
    assert (hold["label"], hold["url"]) == (
        "Hold",
        reverse("telephony:hold", args=[call_in_progress.pk]),
    )
    assert controls(card)["transfer"]["target"] == "colleague"
    assert controls(card)["conference"]["target"] == "party"
    assert controls(card)["dnd"]["url"] == AGENT_STATE
    # Colleagues by name only: the server looks their extension up.
    assert data["colleagues"] == [{"id": bob.pk, "name": "Bob Manager"}]
    assert '"202"' not in json.dumps(data)


def test_a_ringing_call_has_no_controls_yet(ami_server, dialplan, alice, calling_lead, apply):
    apply(call_event("call.ringing", at=timezone.now()))

    (card,) = client_for(alice).get(SCREEN_POP).json()["calls"]

    assert (card["state"], card["controls"]) == ("ringing", [])


def test_the_card_goes_when_the_call_ends(alice, call_in_progress, apply):
    apply(call_event("call.ended", call_id=RECORDED_CALL_ID, at=timezone.now()), source="ami")

    assert client_for(alice).get(SCREEN_POP).json()["calls"] == []


def test_a_call_in_progress_that_lost_its_end_goes_after_hours(alice, call_in_progress):
    with time_machine.travel(timezone.now() + timedelta(hours=5), tick=False):
        assert client_for(alice).get(SCREEN_POP).json()["calls"] == []


def test_without_the_dialplan_contexts_hold_and_conference_say_why_not(
    settings, alice, call_in_progress
):
    settings.TELEPHONY_AMI_HOLD_CONTEXT = settings.TELEPHONY_AMI_CONFERENCE_CONTEXT = ""

    card, _ = card_of(alice, call_in_progress)

    hold, conference = controls(card)["hold"], controls(card)["conference"]
    assert hold["enabled"] is False
    assert hold["reason"].startswith("Hold is off: the PBX has no hold context set up")
    assert conference["enabled"] is False
    assert "TELEPHONY_AMI_CONFERENCE_CONTEXT" in conference["reason"]
    assert controls(card)["transfer"]["enabled"] is True


def test_a_webhook_and_click_to_call_pbx_shows_every_control_disabled_with_the_reason(
    http_pbx, alice, bob, calling_lead, apply
):
    (call,) = apply(call_event("call.answered", at=timezone.now()))

    card, _ = card_of(alice, call)

    reasons = {c["name"]: c["reason"] for c in card["controls"] if not c["enabled"]}
    assert reasons == {
        "hold": "This PBX connection cannot put calls on hold.",
        "transfer": "This PBX connection cannot transfer calls.",
        "attended_transfer": "This PBX connection cannot transfer calls.",
        "conference": "This PBX connection cannot add a third party to a call.",
        "dnd": "This PBX connection cannot switch do-not-disturb.",
        "hangup": "This PBX connection cannot hang up calls.",
    }


def test_with_no_pbx_every_control_says_so(no_pbx, alice, bob, calling_lead, apply):
    (call,) = apply(call_event("call.answered", at=timezone.now()))

    card, _ = card_of(alice, call)

    assert {c["enabled"] for c in card["controls"]} == {False}
    assert {c["reason"] for c in card["controls"]} == {
        "No PBX is configured: click-to-call and call control are off."
    }


def test_with_nobody_to_pass_the_call_to_transfers_say_why(
    ami_server, dialplan, alice, calling_lead, apply
):
    (call,) = apply(call_event("call.answered", at=timezone.now()))  # bob does not exist

    card, data = card_of(alice, call)

    assert data["colleagues"] == []
    assert controls(card)["transfer"]["reason"] == (
        "No colleague has a PBX extension to pass the call to."
    )
    assert controls(card)["conference"]["enabled"] is True  # a number can still be added


def test_the_screen_pop_of_a_call_in_progress_takes_a_few_queries(
    alice, call_in_progress, make_user, django_assert_max_num_queries
):
    for n in range(5):
        make_user(f"colleague{n}", "Managers", extension=f"30{n}")
    client = client_for(alice)

    with django_assert_max_num_queries(11):
        data = client.get(SCREEN_POP).json()

    assert len(data["colleagues"]) == 6


# --- hold and resume -----------------------------------------------------------------------


def test_hold_moves_both_legs_to_the_hold_context_and_the_card_offers_resume(
    ami_server, alice, call_in_progress
):
    response = post_control(alice, "hold", call_in_progress)

    assert (response.status_code, response.json()["message"]) == (200, "The call is on hold.")
    assert [a["Action"] for a in ami_server.actions] == ["CoreShowChannels", "Redirect"]
    redirect = ami_server.actions[-1]
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"]) == (
        LEADS_LEG,
        "crm-hold",
        "hold",
    )
    assert (redirect["ExtraChannel"], redirect["ExtraContext"], redirect["ExtraExten"]) == (
        ALICES_LEG,
        "crm-hold",
        "wait",
    )
    assert (redirect["Priority"], redirect["ExtraPriority"]) == ("1", "1")
    call_in_progress.refresh_from_db()
    assert call_in_progress.state == Call.State.ON_HOLD
    assert state_of(alice).state == "on_hold"
    card, _ = card_of(alice, call_in_progress)
    assert card["state"] == "on_hold"
    assert [c["name"] for c in card["controls"]][0] == "resume"
    assert controls(card)["transfer"] == {
        **controls(card)["transfer"],
        "enabled": False,
        "reason": "Take the call off hold first.",
    }


def test_resume_bridges_the_two_legs_again(ami_server, alice, call_in_progress):
    post_control(alice, "hold", call_in_progress)

    response = post_control(alice, "resume", call_in_progress)

    assert response.json()["message"] == "The call is back on."
    bridge = ami_server.actions[-1]
    assert (bridge["Action"], bridge["Channel1"], bridge["Channel2"], bridge["Tone"]) == (
        "Bridge",
        ALICES_LEG,
        LEADS_LEG,
        "no",
    )
    call_in_progress.refresh_from_db()
    assert call_in_progress.state == Call.State.ANSWERED
    assert state_of(alice).state == "busy"


def test_hold_and_resume_out_of_turn_are_refused(ami_server, alice, call_in_progress):
    resume = post_control(alice, "resume", call_in_progress)
    post_control(alice, "hold", call_in_progress)
    again = post_control(alice, "hold", call_in_progress)

    assert (resume.status_code, resume.json()["error"]) == (409, "This call is not on hold.")
    assert (again.status_code, again.json()["error"]) == (409, "This call is already on hold.")
    assert len(ami_server.actions_named("Redirect")) == 1


def test_a_hold_the_pbx_refuses_leaves_the_call_as_it_was(ami_server, alice, call_in_progress):
    ami_server.errors["Redirect"] = "Channel specified does not exist"

    response = post_control(alice, "hold", call_in_progress)

    assert (response.status_code, response.json()["error"]) == (
        502,
        "The PBX refused: Channel specified does not exist",
    )
    call_in_progress.refresh_from_db()
    assert call_in_progress.state == Call.State.ANSWERED


def test_hold_without_a_hold_context_sends_nothing(settings, ami_server, alice, call_in_progress):
    settings.TELEPHONY_AMI_HOLD_CONTEXT = ""

    response = post_control(alice, "hold", call_in_progress)

    assert response.status_code == 501
    assert "TELEPHONY_AMI_HOLD_CONTEXT" in response.json()["error"]
    assert not ami_server.actions


# --- transfers -----------------------------------------------------------------------------


def test_attended_transfer_to_a_colleague_is_atxfer_of_the_managers_channel(
    ami_server, alice, bob, call_in_progress
):
    response = post_control(alice, "attended_transfer", call_in_progress, {"colleague": bob.pk})

    assert response.status_code == 200
    assert response.json()["message"] == (
        "Your phone is calling Bob Manager: talk to them, then hang up to pass the call on."
    )
    (atxfer,) = ami_server.actions_named("Atxfer")
    assert (atxfer["Channel"], atxfer["Context"], atxfer["Exten"]) == (
        ALICES_LEG,
        "from-internal",
        "202",
    )


def test_blind_transfer_to_a_colleague_names_them(ami_server, alice, bob, call_in_progress):
    response = post_control(alice, "transfer", call_in_progress, {"colleague": bob.pk})

    assert response.json()["message"] == "The call is being transferred to Bob Manager."
    (transfer,) = ami_server.actions_named("BlindTransfer")
    assert (transfer["Channel"], transfer["Exten"]) == (ALICES_LEG, "202")


@pytest.mark.parametrize("colleague", ["alice", "olga", "nobody", "202; drop"])
def test_only_a_colleague_with_an_extension_can_be_chosen(
    ami_server, alice, bob, olga, call_in_progress, colleague
):
    pk = {"alice": alice.pk, "olga": olga.pk, "nobody": 10**6}.get(colleague, colleague)

    response = post_control(alice, "attended_transfer", call_in_progress, {"colleague": pk})

    assert (response.status_code, response.json()["error"]) == (
        400,
        "Choose a colleague with a PBX extension.",
    )
    assert not ami_server.actions


def test_an_attended_transfer_the_pbx_refuses_says_why(ami_server, alice, bob, call_in_progress):
    ami_server.errors["Atxfer"] = "No attended transfer feature code found"

    response = post_control(alice, "attended_transfer", call_in_progress, {"colleague": bob.pk})

    assert (response.status_code, response.json()["error"]) == (
        502,
        "The PBX refused: No attended transfer feature code found",
    )


def test_an_attended_transfer_without_the_managers_phone_on_the_call_is_refused(
    ami_server, alice, bob, call_in_progress
):
    ami_server.channels = [c for c in ami_server.channels if c["Channel"] != ALICES_LEG]

    response = post_control(alice, "attended_transfer", call_in_progress, {"colleague": bob.pk})

    assert (response.status_code, response.json()["error"]) == (
        409,
        "Your phone is not on this call at the PBX.",
    )
    assert not ami_server.actions_named("Atxfer")


# --- conference ----------------------------------------------------------------------------


def test_a_conference_moves_both_legs_into_a_room_and_rings_the_third_party(
    ami_server, alice, call_in_progress
):
    response = post_control(alice, "conference", call_in_progress, {"to": "+7 (495) 111-22-33"})

    assert response.json()["message"] == "Calling +7 (495) 111-22-33 into the call."
    room = str(call_in_progress.pk)
    redirect, originate = ami_server.actions_named("Redirect") + ami_server.actions_named(
        "Originate"
    )
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"]) == (
        LEADS_LEG,
        "crm-conference",
        room,
    )
    assert (redirect["ExtraChannel"], redirect["ExtraExten"]) == (ALICES_LEG, room)
    assert originate["Channel"] == "Local/+74951112233@from-internal"
    assert (originate["Context"], originate["Exten"], originate["Priority"]) == (
        "crm-conference",
        room,
        "1",
    )
    assert originate["Async"] == "true"


def test_a_colleague_joins_a_conference_by_name(ami_server, alice, bob, call_in_progress):
    response = post_control(alice, "conference", call_in_progress, {"colleague": bob.pk})

    assert response.json()["message"] == "Calling Bob Manager into the call."
    (originate,) = ami_server.actions_named("Originate")
    assert originate["Channel"] == "Local/202@from-internal"


def test_a_conference_needs_a_number(ami_server, alice, call_in_progress):
    response = post_control(alice, "conference", call_in_progress, {"to": "202@evil"})

    assert (response.status_code, response.json()["error"]) == (
        400,
        "“202@evil” is neither an extension nor a phone number.",
    )
    assert not ami_server.actions


def test_the_http_connector_cannot_hold_or_confer(http_pbx, alice, calling_lead, apply):
    (call,) = apply(call_event("call.answered", at=timezone.now()))

    hold = post_control(alice, "hold", call)
    conference = post_control(alice, "conference", call, {"to": "203"})

    assert (hold.status_code, hold.json()["error"]) == (
        501,
        "This PBX connection cannot put calls on hold.",
    )
    assert conference.json()["error"] == "This PBX connection cannot add a third party to a call."
    assert not http_pbx.requests


# --- who may --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["attended_transfer", "hold", "resume", "conference"])
def test_a_manager_cannot_touch_another_managers_call(ami_server, bob, live_call, name):
    response = client_for(bob).post(reverse(f"telephony:{name}", args=[live_call.pk]), {"to": "1"})

    assert response.status_code == 404
    assert not ami_server.actions


@pytest.mark.parametrize("name", ["attended_transfer", "hold", "resume", "conference"])
def test_the_new_controls_are_post_only_with_a_csrf_token(ami_server, alice, live_call, name):
    url = reverse(f"telephony:{name}", args=[live_call.pk])

    assert client_for(alice).get(url).status_code == 405
    assert Client().post(url, **JSON).status_code == 403
    assert client_for(alice, enforce_csrf_checks=True).post(url).status_code == 403
    assert not ami_server.actions


@pytest.mark.parametrize("name", ["attended_transfer", "hold", "resume", "conference"])
def test_a_call_a_manager_may_see_but_not_control_answers_403(
    ami_server, dialplan, alice, bob, make_lead, apply, name
):
    make_lead(alice, title="Flower shop", email="f@x.example", phone_raw="+79163333333")
    make_lead(bob, title="Flower farm", email="g@x.example", phone_raw="+79163333333")
    (call,) = apply(
        call_event("call.answered", from_number="+79163333333", extension="202")
    )  # on bob's phone; one of the leads it may be from is alice's

    response = post_control(alice, name, call, {"to": "201"})

    assert (response.status_code, response.json()["error"]) == (
        403,
        "You may not control this call.",
    )
    assert not ami_server.actions
