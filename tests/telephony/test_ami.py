"""`manage.py ami_listen` against a real TCP server speaking AMI, replaying Asterisk 20
transcripts (tests/telephony/ami_transcripts/)."""

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command

from crm.models import Activity, LeadStatus, Notification
from nurture.models import Enrollment
from telephony.calls import pbx
from telephony.calls.agents import state_of
from telephony.calls.ami import listener
from telephony.calls.ami.protocol import parse_message
from telephony.calls.ami.pump import CallEventStore
from telephony.calls.ami.tracking import CallTracker, extension_of
from telephony.models import AgentState, Call
from tests.telephony.conftest import T0
from tests.telephony.fake_ami import FakeAMI, Session, transcript

# The listener applies events in a worker thread, which sees only committed data; the flush
# after such a test would drop the statuses and groups of the data migrations, hence serialized.
live_db = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# The call id the CRM gave the call recorded in placed_from_crm.txt.
RECORDED_CRM_CALL_ID = "crm-5f2b7c9e0a1d4e3f8a6b5c4d3e2f1a0b"


@pytest.fixture
def ami_server(settings, monkeypatch):
    """Start a fake AMI server for the given sessions; the settings point at it."""
    servers = []
    settings.TELEPHONY_AMI_HOST = "127.0.0.1"
    settings.TELEPHONY_AMI_USERNAME = "crm"
    settings.TELEPHONY_AMI_SECRET = "s3cret"
    monkeypatch.setattr(listener, "BACKOFF_INITIAL", 0.01)

    def start(*sessions, **options):
        server = FakeAMI(sessions=list(sessions), **options).__enter__()
        servers.append(server)
        settings.TELEPHONY_AMI_PORT = server.port
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def listen(max_events=None, max_seconds=5) -> str:
    out = StringIO()
    options = ["--max-seconds", str(max_seconds)]
    if max_events:
        options += ["--max-events", str(max_events)]
    call_command("ami_listen", *options, stdout=out)
    return out.getvalue()


def replay(ami_server, name, **options):
    events = transcript(name)
    server = ami_server(Session(events))
    listen(max_events=len(events), **options)
    return server


def seconds(n):
    return T0 + timedelta(seconds=n)


@live_db
def test_an_answered_inbound_call_is_logged_on_the_nurtured_lead_and_stops_nurturing(
    ami_server, calling_lead, alice
):
    replay(ami_server, "inbound_answered.txt")

    call = Call.objects.get()
    assert (call.source, call.call_id) == ("ami", "1763974800.1")
    assert (call.direction, call.state) == (Call.Direction.INBOUND, Call.State.ENDED)
    assert (call.agent, call.lead, call.extension) == (alice, calling_lead, "201")
    assert (call.from_e164, call.line) == ("+79161234567", "74950000000")
    assert (call.started_at, call.answered_at) == (T0, seconds(5.001))
    assert (call.duration, call.talk_time, call.hangup_cause) == (65, 60, "Normal Clearing")
    entry = calling_lead.activities.get(kind=Activity.Kind.CALL)
    assert entry.payload["talk_time"] == 60
    calling_lead.refresh_from_db()
    assert calling_lead.status.code == LeadStatus.IN_PROGRESS
    enrollment = calling_lead.enrollments.get()
    assert (enrollment.state, enrollment.halt_reason) == (
        Enrollment.State.HALTED,
        Enrollment.HaltReason.CALL,
    )
    assert state_of(alice).state == AgentState.State.AVAILABLE


@live_db
def test_a_missed_inbound_call_asks_the_manager_to_call_back(ami_server, calling_lead, alice):
    replay(ami_server, "inbound_missed.txt")

    call = Call.objects.get()
    assert (call.state, call.agent, call.lead) == (Call.State.MISSED, alice, calling_lead)
    assert (call.answered_at, call.talk_time, call.duration) == (None, None, 20)
    assert Notification.objects.filter(user=alice, message__startswith="Missed call").count() == 1
    calling_lead.refresh_from_db()
    assert calling_lead.status.code == LeadStatus.IN_PROGRESS  # the lead called: nurturing stops


@live_db
def test_an_outbound_call_from_a_managers_phone_is_logged_but_nurturing_goes_on(
    ami_server, calling_lead, alice
):
    replay(ami_server, "outbound.txt")

    call = Call.objects.get()
    assert (call.direction, call.state) == (Call.Direction.OUTBOUND, Call.State.ENDED)
    assert (call.agent, call.lead, call.from_raw) == (alice, calling_lead, "201")
    assert call.to_e164 == "+79161234567"
    assert (call.answered_at, call.duration, call.talk_time) == (seconds(8.001), 98, 90)
    assert calling_lead.activities.get(kind=Activity.Kind.CALL).summary == "Outgoing call"
    calling_lead.refresh_from_db()
    assert calling_lead.status.code == LeadStatus.NURTURING


@live_db
def test_a_blind_transfer_hands_the_call_to_the_other_manager(ami_server, calling_lead, alice, bob):
    replay(ami_server, "transferred.txt")

    call = Call.objects.get()
    assert (call.state, call.transferred_to, call.agent) == (Call.State.ENDED, "202", bob)
    assert call.events.filter(type="call.transferred").count() == 1
    # The PBX kept two call records (before and after the transfer); the call spans both.
    assert (call.answered_at, call.duration, call.talk_time) == (seconds(5.001), 106, 101)
    assert calling_lead.activities.filter(kind=Activity.Kind.CALL).count() == 1
    assert state_of(alice).state == state_of(bob).state == AgentState.State.AVAILABLE


@live_db
def test_hold_and_unhold_move_the_call_and_the_manager_and_a_replay_changes_nothing(
    ami_server, calling_lead, alice
):
    events = transcript("held.txt")
    up_to_hold = next(i for i, event in enumerate(events) if event.startswith("Event: Hold")) + 1
    ami_server(Session(events[:up_to_hold]), Session(events))

    listen(max_events=up_to_hold)
    call = Call.objects.get()
    assert call.state == Call.State.ON_HOLD
    assert state_of(alice).state == AgentState.State.ON_HOLD

    listen(max_events=len(events))  # the whole call again, from the start
    call.refresh_from_db()
    assert (call.state, call.talk_time) == (Call.State.ENDED, 60)
    types = list(call.events.values_list("type", flat=True))
    assert (types.count("call.held"), types.count("call.resumed")) == (1, 1)
    assert len(types) == len(set(call.events.values_list("event_id", flat=True)))
    assert calling_lead.activities.filter(kind=Activity.Kind.CALL).count() == 1
    assert Notification.objects.filter(user=alice, message__contains="called").count() == 1


@live_db
def test_the_listener_reconnects_after_a_dropped_connection_and_carries_on(
    ami_server, calling_lead, alice, caplog
):
    events = transcript("inbound_answered.txt")
    server = ami_server(Session(events[:6], drop=True), Session(events[6:]))

    with caplog.at_level(logging.WARNING, logger="telephony.calls.ami"):
        output = listen(max_events=len(events))

    assert server.logins == 2
    assert "reconnecting in" in caplog.text
    assert f"Stopped after {len(events)} AMI events" in output
    call = Call.objects.get()
    assert (call.state, call.talk_time) == (Call.State.ENDED, 60)


@live_db
def test_a_refused_login_is_retried_with_backoff_until_the_listener_stops(ami_server, caplog):
    server = ami_server(secret="another secret")

    with caplog.at_level(logging.WARNING, logger="telephony.calls.ami"):
        listen(max_seconds=0.5)

    assert server.refused_logins >= 2
    assert "login refused: Authentication failed" in caplog.text
    assert not Call.objects.exists()


def test_a_quiet_connection_is_kept_alive_with_pings(ami_server, monkeypatch):
    monkeypatch.setattr(listener, "PING_INTERVAL", 0.05)
    server = ami_server()

    listen(max_seconds=0.4)

    assert server.pings >= 2
    assert server.logins == 1


def test_a_connection_that_stops_answering_pings_is_replaced(ami_server, monkeypatch, caplog):
    monkeypatch.setattr(listener, "PING_INTERVAL", 0.05)
    server = ami_server(answer_pings=False)

    with caplog.at_level(logging.WARNING, logger="telephony.calls.ami"):
        listen(max_seconds=0.5)

    assert server.logins >= 2
    assert "no answer to a ping; reconnecting" in caplog.text


@pytest.mark.slow
def test_sigterm_stops_the_listener_cleanly(ami_server):
    server = ami_server()
    env = {
        **os.environ,
        "TELEPHONY_AMI_USERNAME": "crm",
        "TELEPHONY_AMI_SECRET": "s3cret",
        "LANGUAGE_CODE": "en",
    }
    command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "ami_listen"]
    command += ["--host", "127.0.0.1", "--port", str(server.port), "--max-seconds", "20"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while server.logins == 0 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert server.logins == 1, process.stderr.read().decode() if process.poll() else ""
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr.decode()
    assert "Stopped after 0 AMI events" in stdout.decode()


@live_db
def test_a_call_that_started_before_the_listener_is_left_alone(ami_server, calling_lead):
    events = transcript("inbound_answered.txt")
    ami_server(Session(events[4:]))

    listen(max_events=len(events) - 4)

    assert not Call.objects.exists()


@live_db
def test_a_call_placed_from_the_crm_is_followed_on_its_own_row(ami_server, calling_lead, alice):
    server = ami_server()
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False):
        placed = pbx.click_to_call(alice, calling_lead)
    # The PBX names the call by the channel id the CRM gave it in the Originate.
    call_id = server.actions_named("Originate")[0]["ChannelId"]
    events = [
        text.replace(RECORDED_CRM_CALL_ID, call_id) for text in transcript("placed_from_crm.txt")
    ]
    server.sessions.append(Session(events))

    listen(max_events=len(events))

    call = Call.objects.get()
    assert (call.pk, call.source, call.call_id) == (placed.pk, "crm", call_id)
    assert (call.state, call.agent, call.lead) == (Call.State.ENDED, alice, calling_lead)
    # Alice picking up her own phone is not the lead answering; the lead answers at 10 s.
    assert (call.answered_at, call.duration, call.talk_time) == (seconds(10.001), 70, 60)
    assert calling_lead.activities.filter(kind=Activity.Kind.CALL).count() == 1


def test_the_lead_id_a_crm_call_carries_picks_the_lead_among_those_sharing_the_number(
    make_lead, alice
):
    first = make_lead(alice, phone_raw="+79161234567", email="a@x.example")
    chosen = make_lead(alice, phone_raw="89161234567", email="b@x.example")
    tracker, store = CallTracker(), CallEventStore()
    for text in transcript("outbound.txt"):
        message = parse_message(text.splitlines())
        if message.get("Channel", "").startswith("PJSIP/201-"):
            # manager.conf: channelvars = CRM_LEAD_ID
            message["ChanVariable"] = {"CRM_LEAD_ID": str(chosen.pk)}
        tracked = tracker.feed(message)
        if tracked:
            store.apply(tracked)

    call = Call.objects.get()
    assert (call.lead, call.state) == (chosen, Call.State.ENDED)
    assert chosen.activities.filter(kind=Activity.Kind.CALL).count() == 1
    assert not first.activities.filter(kind=Activity.Kind.CALL).exists()


def test_unknown_events_and_events_without_a_call_are_ignored():
    tracker = CallTracker()
    for text in [
        "Event: PeerStatus\r\nPeer: PJSIP/201\r\nPeerStatus: Reachable",
        "Event: FullyBooted\r\nStatus: Fully Booted",
        "Event: Hangup\r\nChannel: PJSIP/201-00000001",
        "Event: DialEnd\r\nDialStatus: BUSY\r\nLinkedid: 1.1\r\nChannel: PJSIP/sipnet-1",
    ]:
        assert tracker.feed(parse_message(text.splitlines())) is None


@pytest.mark.parametrize(
    ("channel", "extension"),
    [
        ("PJSIP/201-0000000a", "201"),
        ("SIP/1601-00000001", "1601"),
        ("Local/202@from-queue-00000003;1", "202"),
        ("PJSIP/sipnet-0000000b", ""),
        ("PJSIP/79161234567-0000000c", ""),
        ("", ""),
    ],
)
def test_a_managers_extension_is_read_from_the_channel_name(channel, extension):
    assert extension_of(channel) == extension
