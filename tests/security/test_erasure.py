"""A supervisor erases a person: afterwards no table holds their name, address or phone, one
audit entry says who erased what (counts only), their suppressed address stays suppressed as a
hash, and nobody else can do it."""

import hashlib
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models.functions import Cast
from django.urls import reverse

from crm import services as crm_services
from crm.erasure import erase_lead
from crm.models import Activity, Lead, Notification
from nurture import sending
from nurture.dispatch import dispatch_due
from nurture.models import Enrollment, OutboundMessage, Suppression
from telephony.calls.services import apply_event
from telephony.mail.services import receive_email
from telephony.models import Call, CallEvent, InboundContact, InboundEmail, RejectedPayload
from telephony.services import keep_rejected
from tests.telephony.conftest import call_event

MSK = ZoneInfo("Europe/Moscow")
FIRST_SEND = datetime(2025, 11, 26, 10, 0, tzinfo=MSK)  # the nurtured leads' first email
A_WEEK_LATER = FIRST_SEND + timedelta(days=7)
IVAN = "ivan@client.example"
# What identifies Ivan, in every form it could have been stored in.
IVANS_TRACES = [
    IVAN,
    "Petrov",
    "Petrov Trading",
    "+79161234567",
    "79161234567",
    "8 (916) 123-45-67",
    "916 123-45-67",
]
CHANGELIST = reverse("admin:crm_lead_changelist")


def move_to_nurturing(lead, by, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(lead, "nurturing", by=by)
    lead.refresh_from_db()
    return lead


@pytest.fixture
def maria(clock, make_lead, bob, django_capture_on_commit_callbacks):
    """Maria, bob's lead, nurtured too: a person nobody erases."""
    lead = make_lead(
        bob,
        first_name="Maria",
        last_name="Sidorova",
        email="maria@other.example",
        phone_raw="+7 903 555-00-11",
        title="Bakery",
    )
    return move_to_nurturing(lead, bob, django_capture_on_commit_callbacks)


@pytest.fixture
def ivan(
    clock,
    nurtured_lead,
    maria,
    alice,
    client,
    smtp_server,
    django_capture_on_commit_callbacks,
):
    """Alice's Ivan with everything the CRM can hold about a person: an admin change naming
    him, a nurture email really sent, his unsubscribe, his reply, his call, and a rejected
    webhook body with his address and phone."""
    client.force_login(alice)
    page = reverse("admin:crm_lead_change", args=[nurtured_lead.pk])
    form = {
        "title": nurtured_lead.title,
        "status": nurtured_lead.status_id,
        "responsible": alice.pk,
        "first_name": "Ivan",
        "last_name": "Petrov",
        "email": IVAN,
        "phone_raw": "8 (916) 123-45-67",
        "company": "Petrov Trading",
        "source": "",
        "language": nurtured_lead.language,
        "time_zone": "",
        "activities-TOTAL_FORMS": "0",
        "activities-INITIAL_FORMS": "0",
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(page, form).status_code == 302
    client.logout()

    clock.move_to(FIRST_SEND)
    with django_capture_on_commit_callbacks(execute=False):
        created = dispatch_due()
    assert set(sending.send_messages(created).values()) == {"sent"}
    [ivans_email] = [email for email in smtp_server.handler.wait_for(2) if IVAN in email["To"]]

    unsubscribe = urlsplit(ivans_email["List-Unsubscribe"].strip().strip("<>")).path
    assert (
        client.post(
            unsubscribe,
            "List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        ).status_code
        == 200
    )

    reply = EmailMessage()
    reply["From"] = f"Ivan Petrov <{IVAN}>"
    reply["To"] = ivans_email["From"]
    reply["Subject"] = f"Re: {ivans_email['Subject']}"
    reply["Message-ID"] = "<reply-1@client.example>"
    reply["In-Reply-To"] = ivans_email["Message-ID"]
    reply.set_content("Call me at 8 (916) 123-45-67. Ivan Petrov, Petrov Trading")
    with django_capture_on_commit_callbacks(execute=True):
        assert receive_email(reply, source="test") is not None

    at = FIRST_SEND + timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        for event in [
            call_event("call.ringing", at=at),
            call_event("call.answered", at=at, seconds=5),
            call_event(
                "call.ended",
                at=at,
                seconds=65,
                duration=65,
                recording_url="https://pbx.example/rec/+79161234567.mp3",
                raw={"from": "+7 916 123-45-67", "caller_name": "Ivan Petrov"},
            ),
        ]:
            apply_event("pbx", event)
    keep_rejected(
        "webhook",
        "bad signature",
        f'{{"from": "+79161234567", "email": "{IVAN}"}}',
        {"X-Caller": "+79161234567"},
    )

    lead = Lead.objects.get(pk=nurtured_lead.pk)
    assert Suppression.objects.active().filter(address=IVAN).exists()
    assert InboundEmail.objects.filter(lead=lead).exists()
    assert Call.objects.get().lead == lead
    assert LogEntry.objects.filter(object_id=str(lead.pk), object_repr__contains="Petrov")
    return lead


def erase_over_http(client, user, lead, *, confirm=True):
    client.force_login(user)
    data = {"action": "erase_person", ACTION_CHECKBOX_NAME: [lead.pk]}
    if confirm:
        data["confirm"] = "yes"
    return client.post(CHANGELIST, data)


def traces_of(terms) -> list[str]:
    """Every text or JSON value in every table that contains one of `terms` (any case), as
    "table.column: term"."""
    found = []
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.concrete_fields:
            if isinstance(field, models.JSONField):
                column = Cast(field.name, models.TextField())
            elif isinstance(field, (models.CharField, models.TextField)):
                column = models.F(field.name)
            else:
                continue
            rows = model._default_manager.annotate(column_text=column)
            for term in terms:
                if rows.filter(column_text__icontains=term).exists():
                    found.append(f"{model._meta.db_table}.{field.column}: {term}")
    return found


def data_of(lead) -> tuple:
    """What the CRM holds about `lead`, to compare before and after."""
    return (
        Lead.objects.filter(pk=lead.pk).values().first(),
        list(Activity.objects.filter(lead=lead).values()),
        list(Notification.objects.filter(lead=lead).values()),
        list(Enrollment.objects.filter(lead=lead).values()),
        list(OutboundMessage.objects.filter(enrollment__lead=lead).values()),
    )


def everything() -> tuple:
    """How many rows of each kind there are."""
    kinds = [Lead, Activity, Notification, Enrollment, OutboundMessage, Suppression, LogEntry]
    kinds += [Call, CallEvent, InboundContact, InboundEmail, RejectedPayload]
    return tuple(kind.objects.count() for kind in kinds)


# --- A supervisor erases ------------------------------------------------------------------------


def test_after_a_supervisor_erases_a_person_no_table_holds_their_name_address_or_phone(
    ivan, olga, client
):
    assert traces_of(IVANS_TRACES)  # the search finds them while they are there

    answer = erase_over_http(client, olga, ivan)

    assert answer.status_code == 302
    assert not Lead.objects.filter(pk=ivan.pk).exists()
    assert traces_of(IVANS_TRACES) == []


def test_the_suppression_of_the_erased_address_stays_as_its_hash_only(ivan, olga, client):
    erase_over_http(client, olga, ivan)

    suppression = Suppression.objects.active().get()
    assert suppression.address is None
    assert suppression.address_hash == hashlib.sha256(IVAN.encode()).hexdigest()
    assert suppression.details == {}


def test_one_audit_entry_says_who_erased_what_without_personal_data(ivan, olga, client):
    erase_over_http(client, olga, ivan)

    [entry] = LogEntry.objects.filter(object_id=str(ivan.pk))
    assert (entry.user, entry.action_flag) == (olga, DELETION)
    assert entry.content_type.model_class() is Lead
    assert entry.object_repr == f"Lead #{ivan.pk} (erased)"
    assert "crm.activities" in entry.change_message
    assert "telephony.inbound_emails 1" in entry.change_message
    for trace in [*IVANS_TRACES, "Ivan", "Shop"]:
        assert trace not in entry.object_repr + entry.change_message


def test_the_erased_persons_call_is_kept_for_the_report_without_number_or_recording(
    ivan, olga, client
):
    erase_over_http(client, olga, ivan)

    call = Call.objects.get()
    assert (call.lead, call.agent.username, call.duration) == (None, "alice", 65)
    assert (call.from_raw, call.from_e164, call.recording_url) == ("", "", "")
    assert not CallEvent.objects.exists()


def test_a_new_lead_with_the_erased_address_is_not_emailed(
    ivan, olga, bob, client, make_lead, smtp_server, clock, django_capture_on_commit_callbacks
):
    erase_over_http(client, olga, ivan)
    sent_before = len(smtp_server.received)

    newcomer = make_lead(bob, first_name="Ivan", email=IVAN.upper(), title="Later")
    move_to_nurturing(newcomer, bob, django_capture_on_commit_callbacks)
    clock.move_to(A_WEEK_LATER)
    with django_capture_on_commit_callbacks(execute=False):
        created = dispatch_due()
    sending.send_messages(created)

    enrollment = newcomer.enrollments.get()
    assert (enrollment.state, enrollment.halt_reason) == ("halted", "unsubscribe")
    assert not OutboundMessage.objects.filter(enrollment=enrollment).exists()
    assert all(IVAN not in email["To"] for email in smtp_server.received[sent_before:])


def test_erasing_a_person_leaves_another_leads_data_whole(ivan, maria, olga, client):
    marias = data_of(maria)

    erase_over_http(client, olga, ivan)

    assert data_of(maria) == marias
    assert marias[4]  # her email is there, and stays


def test_a_person_who_never_unsubscribed_is_erased_without_a_suppression(maria, olga, client):
    erase_over_http(client, olga, maria)

    assert not Suppression.objects.exists()
    assert traces_of(["maria@other.example", "Sidorova", "+79035550011"]) == []


# --- Confirmation and who may ---------------------------------------------------------------------


def test_the_action_first_asks_for_confirmation_and_changes_nothing(ivan, olga, client):
    before = everything()

    answer = erase_over_http(client, olga, ivan, confirm=False)

    assert answer.status_code == 200
    assert "Yes, erase" in answer.text
    assert everything() == before


def test_a_manager_cannot_erase_even_their_own_lead(ivan, alice, client):
    before, ivans = everything(), data_of(ivan)

    answer = erase_over_http(client, alice, ivan)

    assert answer.status_code == 403
    assert (everything(), data_of(ivan)) == (before, ivans)
    with pytest.raises(PermissionDenied):
        erase_lead(ivan, by=alice)
    assert everything() == before


def test_deleting_a_lead_in_the_admin_erases_the_person(ivan, olga, client):
    client.force_login(olga)
    page = reverse("admin:crm_lead_delete", args=[ivan.pk])

    assert client.post(page, {"post": "yes"}).status_code == 302

    assert not Lead.objects.filter(pk=ivan.pk).exists()
    assert traces_of(IVANS_TRACES) == []
    assert LogEntry.objects.get(object_id=str(ivan.pk)).object_repr == f"Lead #{ivan.pk} (erased)"


def test_deleting_leads_with_the_bulk_action_erases_each_person(ivan, maria, olga, client):
    client.force_login(olga)
    selected = {ACTION_CHECKBOX_NAME: [ivan.pk, maria.pk]}

    answer = client.post(CHANGELIST, {"action": "delete_selected", "post": "yes", **selected})

    assert answer.status_code == 302
    assert not Lead.objects.exists()
    assert traces_of([*IVANS_TRACES, "maria@other.example", "Sidorova"]) == []
    assert LogEntry.objects.filter(object_repr__endswith="(erased)").count() == 2
