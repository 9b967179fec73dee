from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone, translation

from crm.models import Activity, LeadStatus, Notification
from nurture.models import Enrollment
from telephony.calls.agents import set_away, state_of
from telephony.models import AgentState, Call, CallEvent
from tests.telephony.conftest import call_event


def test_an_answered_inbound_call_is_logged_on_the_lead_and_stops_nurturing(
    calling_lead, alice, apply
):
    apply(
        call_event("call.ringing"),
        call_event("call.answered", seconds=5),
        call_event("call.ended", seconds=65, duration=65),
    )

    call = Call.objects.get()
    assert (call.state, call.lead, call.agent) == (Call.State.ENDED, calling_lead, alice)
    assert (call.duration, call.talk_time) == (65, 60)
    assert call.from_e164 == "+79161234567"
    calling_lead.refresh_from_db()
    assert calling_lead.status.code == LeadStatus.IN_PROGRESS
    enrollment = calling_lead.enrollments.get()
    assert (enrollment.state, enrollment.halt_reason) == (
        Enrollment.State.HALTED,
        Enrollment.HaltReason.CALL,
    )
    entry = calling_lead.activities.get(kind=Activity.Kind.CALL)
    assert entry.payload["talk_time"] == 60
    assert Notification.objects.filter(user=alice, message__contains="called").count() == 1


def test_events_in_any_order_build_the_same_call(calling_lead, apply):
    apply(
        call_event("call.ended", seconds=65),
        call_event("call.answered", seconds=5),
        call_event("call.ringing"),
    )

    call = Call.objects.get()
    assert call.state == Call.State.ENDED
    assert (call.duration, call.talk_time) == (65, 60)


def test_the_same_event_twice_changes_nothing(calling_lead, apply, alice):
    ringing = call_event("call.ringing")

    first, second = apply(ringing, ringing)

    assert first is not None and second is None
    assert CallEvent.objects.count() == 1
    assert Notification.objects.filter(user=alice, message__contains="called").count() == 1


def test_a_missed_call_asks_the_responsible_to_call_back_once(calling_lead, alice, apply):
    apply(call_event("call.ringing"), call_event("call.ended", seconds=20))
    apply(call_event("call.recording_ready", seconds=30, recording_url="https://pbx/r.wav"))

    assert Call.objects.get().state == Call.State.MISSED
    assert Notification.objects.filter(user=alice, message__startswith="Missed call").count() == 1


def test_a_number_shared_by_two_leads_is_left_for_the_manager_to_choose(make_lead, alice, apply):
    first = make_lead(alice, phone_raw="+79161234567", email="a@x.example")
    second = make_lead(alice, phone_raw="89161234567", email="b@x.example")

    apply(call_event("call.ringing"))

    call = Call.objects.get()
    assert call.lead is None
    assert set(call.candidate_leads.all()) == {first, second}


def test_the_agent_state_follows_the_call(calling_lead, alice, apply):
    apply(call_event("call.ringing"))
    assert state_of(alice).state == AgentState.State.RINGING
    apply(call_event("call.answered", seconds=3))
    assert state_of(alice).state == AgentState.State.BUSY
    apply(call_event("call.held", seconds=10))
    assert state_of(alice).state == AgentState.State.ON_HOLD
    apply(call_event("call.ended", seconds=30))
    assert state_of(alice).state == AgentState.State.AVAILABLE


def test_a_manager_who_is_away_stays_away(calling_lead, alice, apply):
    set_away(alice, True)

    apply(call_event("call.ringing"), call_event("call.ended", seconds=10))

    assert state_of(alice).state == AgentState.State.AWAY


@pytest.mark.parametrize(
    ("events", "back_to"),
    [
        ([], AgentState.State.AVAILABLE),
        (["call.ringing"], AgentState.State.RINGING),
        (["call.ringing", "call.answered"], AgentState.State.BUSY),
        (["call.ringing", "call.answered", "call.held"], AgentState.State.ON_HOLD),
        (["call.ringing", "call.answered", "call.ended"], AgentState.State.AVAILABLE),
    ],
)
def test_a_manager_back_from_away_is_what_her_call_makes_her(
    calling_lead, alice, apply, events, back_to
):
    set_away(alice, True)
    apply(*(call_event(type, seconds=n) for n, type in enumerate(events)))
    assert state_of(alice).state == AgentState.State.AWAY

    set_away(alice, False)

    assert state_of(alice).state == back_to


def test_back_from_away_a_call_that_lost_its_end_keeps_nobody_ringing(calling_lead, alice, apply):
    set_away(alice, True)
    apply(call_event("call.ringing"))

    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=False):
        set_away(alice, False)

    assert state_of(alice).state == AgentState.State.AVAILABLE


def test_an_outbound_call_is_logged_but_does_not_stop_nurturing(calling_lead, apply):
    apply(
        call_event("call.answered", direction="out", from_number="201", to_number="+79161234567"),
        call_event("call.ended", seconds=40, direction="out"),
    )

    calling_lead.refresh_from_db()
    assert calling_lead.status.code == LeadStatus.NURTURING
    assert calling_lead.activities.filter(kind=Activity.Kind.CALL).count() == 1


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_calls_labels_are_what_django_displays(language):
    with translation.override(language):
        for direction in Call.Direction.values:
            for state in [*Call.State.values, "retired_state"]:
                call = Call(direction=direction, state=state)
                assert str(call.direction_label) == str(call.get_direction_display())
                assert str(call.state_label) == str(call.get_state_display())
