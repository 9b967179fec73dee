"""A supervisor downloads everything held about a lead as one JSON file, and the export is on
the lead's History; a manager, even the lead's own, cannot export, and nothing is logged."""

import json
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from crm import services as crm_services
from crm.export import export_lead
from crm.models import Activity
from nurture.dispatch import dispatch_due
from nurture.models import OutboundMessage
from nurture.sending import send_messages
from telephony.calls.events import CallEventData
from telephony.calls.services import apply_event
from telephony.mail.services import receive_email

MSK = ZoneInfo("Europe/Moscow")
FIRST_SEND = datetime(2025, 11, 26, 10, 0, tzinfo=MSK)  # nurtured_lead's first email
REPLIED = FIRST_SEND + timedelta(hours=2)
CALLED = REPLIED + timedelta(hours=1)


def call(lead, *, call_id, at):
    """An inbound call from the lead that alice answers and that lasts a minute."""
    for offset, type in enumerate(["call.ringing", "call.answered", "call.ended"]):
        apply_event(
            "pbx",
            CallEventData(
                event_id=f"{call_id}-{type}",
                type=type,
                call_id=call_id,
                occurred_at=at + timedelta(seconds=30 * offset),
                direction="in",
                from_number="+7 916 123-45-67",
                to_number="+7 495 000-00-00",
                extension="201",
                duration=60 if type == "call.ended" else None,
                raw={"pbx_event": type, "call": call_id},
            ),
            lead_id=lead.pk,
        )


@pytest.fixture
def ivan(clock, nurtured_lead, alice, smtp_server, django_capture_on_commit_callbacks):
    """Alice's Ivan got his first email, wrote back to it, then called and talked to alice."""
    clock.move_to(FIRST_SEND)
    with django_capture_on_commit_callbacks(execute=False):
        created = dispatch_due()
    send_messages(created)
    [sent] = smtp_server.handler.wait_for(1)

    clock.move_to(REPLIED)
    reply = EmailMessage()
    reply["From"] = "Иван Петров <ivan@client.example>"
    reply["To"] = sent["From"]
    reply["Subject"] = f"Re: {sent['Subject']}"
    reply["Message-ID"] = make_msgid(domain="client.example")
    reply["In-Reply-To"] = reply["References"] = sent["Message-ID"]
    reply.set_content("Да, решение принято: давайте созвонимся.\n")
    with django_capture_on_commit_callbacks(execute=True):
        assert receive_email(reply, source="imap") is not None

    clock.move_to(CALLED)
    with django_capture_on_commit_callbacks(execute=True):
        call(nurtured_lead, call_id="ivan-call", at=CALLED)
        crm_services.record_activity(
            nurtured_lead, Activity.Kind.NOTE, "Ждёт договор к пятнице", actor=alice
        )
    return nurtured_lead


@pytest.fixture
def maria(ivan, make_lead, bob, django_capture_on_commit_callbacks):
    """Bob's Maria, another lead, who called too."""
    lead = make_lead(
        bob, first_name="Maria", last_name="Sidorova", email="maria@other.example", title="Depot"
    )
    with django_capture_on_commit_callbacks(execute=True):
        call(lead, call_id="maria-call", at=CALLED + timedelta(minutes=5))
    return lead


def download(client, *leads):
    return client.post(
        reverse("admin:crm_lead_changelist"),
        {"action": "download_export", "_selected_action": [lead.pk for lead in leads]},
    )


def test_a_supervisor_downloads_everything_held_about_a_lead(ivan, maria, client, olga):
    client.force_login(olga)

    response = download(client, ivan)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="lead-{ivan.pk}.json"'
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode("utf-8")
    assert "Иван Петров" in body  # UTF-8, not \u escapes
    data = json.loads(body)

    assert data["format"]["version"] == 1
    assert data["format"]["exported_at"] == CALLED.astimezone(ZoneInfo("UTC")).isoformat()
    assert data["lead"]["email"] == "ivan@client.example"
    assert data["lead"]["status"]["code"] == "in_progress"
    assert data["lead"]["responsible"] == "Alice Manager"

    kinds = [entry["kind"] for entry in data["timeline"]]
    assert kinds[0] == "created"
    assert {"status_change", "email_out", "email_in", "call", "note"} <= set(kinds)
    assert "Ждёт договор к пятнице" in [entry["text"] for entry in data["timeline"]]
    assert any(entry["to"] == "Alice Manager" for entry in data["notifications"])

    [enrollment] = data["enrollments"]
    assert (enrollment["state"], enrollment["halt_reason"]) == ("halted", "reply")
    [email_sent] = data["emails_sent"]
    outbound = OutboundMessage.objects.get(enrollment__lead=ivan)
    assert email_sent["message_id"] == outbound.message_id
    assert email_sent["to"] == "ivan@client.example"
    assert email_sent["state"] == "sent"
    assert "Shop" in email_sent["subject"] and email_sent["body_text"]
    assert email_sent["sent_at"] == FIRST_SEND.astimezone(ZoneInfo("UTC")).isoformat()
    assert data["suppressions"] == []

    [email_received] = data["emails_received"]
    assert email_received["in_reply_to"] == outbound.message_id
    assert email_received["text"].startswith("Да, решение принято")
    assert email_received["from_name"] == "Иван Петров"

    [ivan_call] = data["calls"]
    assert (ivan_call["direction"], ivan_call["state"]) == ("in", "ended")
    assert ivan_call["manager"] == "Alice Manager"
    assert ivan_call["from_e164"] == "+79161234567"
    assert [event["type"] for event in ivan_call["events"]] == [
        "call.ringing",
        "call.answered",
        "call.ended",
    ]
    assert ivan_call["events"][0]["payload"] == {"pbx_event": "call.ringing", "call": "ivan-call"}
    assert {contact["channel"] for contact in data["inbound_contacts"]} == {"email", "call"}


def test_the_export_holds_nothing_of_another_lead_or_of_colleagues(
    ivan, maria, client, olga, alice
):
    """The emails carry alice's address and signature, as the lead got them; her profile's
    phone and extension, and the supervisor who exports, are nothing the lead is owed."""
    alice.profile.phone = "+7 999 111-22-33"
    alice.profile.save()
    client.force_login(olga)

    body = download(client, ivan).content.decode("utf-8")

    for other in ("Maria", "Sidorova", "maria@other.example", "Depot", "maria-call"):
        assert other not in body
    for colleague in ("999 111-22-33", '"201"', "olga", "Olga"):
        assert colleague not in body


def test_the_export_is_on_the_leads_history_without_the_persons_name_or_address(ivan, client, olga):
    client.force_login(olga)

    download(client, ivan)

    [entry] = LogEntry.objects.all()
    assert (entry.user, entry.action_flag) == (olga, CHANGE)
    assert entry.get_edited_object() == ivan
    assert entry.object_repr == f"Lead #{ivan.pk}"
    assert entry.change_message == "Exported the lead's data"
    written = f"{entry.object_repr} {entry.change_message}".lower()
    for personal in ("ivan", "петров", "client.example", "shop"):
        assert personal not in written


def test_several_leads_are_downloaded_as_one_list_and_each_export_is_logged(
    ivan, maria, client, olga
):
    client.force_login(olga)

    response = download(client, ivan, maria)

    assert response["Content-Disposition"] == 'attachment; filename="leads.json"'
    exports = json.loads(response.content)
    assert [export["lead"]["id"] for export in exports] == [ivan.pk, maria.pk]
    assert [export["calls"][0]["events"][0]["payload"]["call"] for export in exports] == [
        "ivan-call",
        "maria-call",
    ]
    assert sorted(LogEntry.objects.values_list("object_id", flat=True)) == sorted(
        [str(ivan.pk), str(maria.pk)]
    )


@pytest.mark.parametrize("manager", ["alice", "bob"])
def test_a_manager_even_the_leads_own_cannot_export_and_nothing_is_logged(
    ivan, client, manager, request
):
    client.force_login(request.getfixturevalue(manager))

    response = download(client, ivan)

    assert response.status_code == 403
    assert b"Shop" not in response.content and b"ivan@" not in response.content
    assert not LogEntry.objects.exists()


def test_export_lead_refuses_anybody_but_a_supervisor(ivan, alice):
    with pytest.raises(PermissionDenied):
        export_lead(ivan, by=alice)

    assert not LogEntry.objects.exists()


def test_the_suppression_of_the_leads_address_is_exported(ivan, olga):
    from nurture.services import suppress_address

    suppress_address("IVAN@client.example", "unsubscribe")

    [suppression] = export_lead(ivan, by=olga)["suppressions"]

    assert (suppression["address"], suppression["reason"]) == ("ivan@client.example", "unsubscribe")
    assert suppression["lifted_at"] is None
