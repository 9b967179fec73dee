"""Lead.last_activity_at follows the timeline, whoever writes to it."""

from datetime import datetime, timedelta
from email.message import EmailMessage

import pytest
from django.urls import reverse

from crm import services
from crm.models import Activity, Lead
from nurture import tasks
from nurture.models import Suppression
from nurture.services import suppress_address
from telephony.calls.services import apply_event
from telephony.mail.services import receive_email
from tests.conftest import MSK
from tests.telephony.conftest import call_event


def stored(lead) -> datetime:
    return Lead.objects.values_list("last_activity_at", flat=True).get(pk=lead.pk)


def newest_entry(lead) -> Activity:
    return Activity.objects.filter(lead=lead).order_by("-created_at", "-id").first()


@pytest.fixture
def later(clock):
    """Moves the clock an hour on and returns the new now."""

    def move():
        clock.shift(timedelta(hours=1))
        return datetime.now(tz=MSK)

    return move


def test_a_new_lead_was_last_active_when_it_was_created(clock, make_lead, alice):
    lead = make_lead(alice)

    assert stored(lead) == newest_entry(lead).created_at == lead.last_activity_at
    assert newest_entry(lead).kind == Activity.Kind.CREATED


def test_a_status_change_moves_it(make_lead, alice, later):
    lead = make_lead(alice)
    now = later()

    services.change_status(lead, "in_progress", by=alice)

    assert stored(lead) == now == lead.last_activity_at


def test_a_note_added_in_the_admin_moves_it(client, make_lead, alice, later):
    lead = make_lead(alice)
    now = later()
    client.force_login(alice)

    response = client.post(
        reverse("admin:crm_activity_add"), {"lead": lead.pk, "summary": "Called back"}
    )

    assert response.status_code == 302
    assert newest_entry(lead).summary == "Called back"
    assert stored(lead) == now


def test_an_email_sent_by_the_nurture_loop_moves_it(
    clock, nurtured_lead, smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    clock.move_to(datetime(2025, 11, 26, 10, 0, tzinfo=MSK))  # the first send is due

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.dispatch_due() == 1
    smtp_server.handler.wait_for(1)

    assert newest_entry(nurtured_lead).kind == Activity.Kind.EMAIL_OUT
    assert stored(nurtured_lead) == newest_entry(nurtured_lead).created_at
    assert stored(nurtured_lead) > nurtured_lead.last_activity_at


def test_a_call_moves_it(make_lead, alice, later, django_capture_on_commit_callbacks):
    lead = make_lead(alice, phone_raw="8 (916) 123-45-67")
    now = later()

    with django_capture_on_commit_callbacks(execute=True):
        apply_event("pbx", call_event("call.ringing", at=now))
        apply_event("pbx", call_event("call.ended", at=now, seconds=30, duration=30))

    assert Activity.objects.filter(lead=lead, kind=Activity.Kind.CALL).exists()
    assert stored(lead) == newest_entry(lead).created_at
    assert stored(lead) >= now


def test_an_incoming_letter_moves_it(make_lead, alice, later, django_capture_on_commit_callbacks):
    lead = make_lead(alice, email="ivan@client.example")
    now = later()
    letter = EmailMessage()
    letter["From"] = "Ivan <ivan@client.example>"
    letter["To"] = "alice@crm.example"
    letter["Subject"] = "Our project"
    letter["Message-ID"] = "<letter-1@client.example>"
    letter.set_content("Let us talk tomorrow.")

    with django_capture_on_commit_callbacks(execute=True):
        receive_email(letter, source="test")

    assert Activity.objects.filter(lead=lead, kind=Activity.Kind.EMAIL_IN).exists()
    assert stored(lead) == newest_entry(lead).created_at >= now


def test_a_suppression_moves_it_for_every_lead_with_the_address(make_lead, alice, bob, later):
    first = make_lead(alice, email="shared@client.example")
    second = make_lead(bob, email="shared@client.example")
    now = later()

    suppress_address("shared@client.example", Suppression.Reason.UNSUBSCRIBE)

    assert stored(first) == stored(second) == now


def test_an_older_entry_does_not_move_it_back(make_lead, alice, later):
    lead = make_lead(alice)
    now = later()
    services.change_status(lead, "in_progress", by=alice)

    services.record_activity(
        lead, Activity.Kind.NOTE, "Backdated", actor=alice, at=now - timedelta(days=3)
    )

    assert stored(lead) == now


def test_saving_a_lead_read_earlier_keeps_the_newer_last_activity(make_lead, alice, later):
    lead = make_lead(alice)
    read_earlier = Lead.objects.get(pk=lead.pk)
    now = later()
    services.change_status(lead, "in_progress", by=alice)

    read_earlier.company = "Acme"
    read_earlier.save()

    assert stored(lead) == now
    assert Lead.objects.get(pk=lead.pk).company == "Acme"


def test_many_entries_at_once_move_each_lead_to_its_newest(make_lead, alice, later):
    first, second = make_lead(alice), make_lead(alice, email="other@client.example")
    now = later()

    services.add_activities(
        [
            services.new_activity(first, Activity.Kind.NOTE, "a", at=now - timedelta(minutes=5)),
            services.new_activity(first, Activity.Kind.NOTE, "b", at=now),
            services.new_activity(second, Activity.Kind.NOTE, "c", at=now - timedelta(minutes=1)),
        ]
    )

    assert stored(first) == now == first.last_activity_at
    assert stored(second) == now - timedelta(minutes=1)
