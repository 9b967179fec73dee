"""telephony's part of a lead's data export (crm.privacy.lead_export): the lead's calls with
the PBX's raw events, the mail matched to it, and its counted inbound contacts."""

from django.db.models import Prefetch
from django.dispatch import receiver

from crm.export import display_name, isoformat
from crm.privacy import lead_export
from telephony.models import Call, CallEvent, InboundContact, InboundEmail


@receiver(lead_export, dispatch_uid="telephony.export")
def export_telephony(sender, lead, **kwargs):
    return {
        "calls": _calls(lead),
        "emails_received": _emails(lead),
        "inbound_contacts": _contacts(lead),
    }


def _calls(lead) -> list[dict]:
    """Calls attached to the lead; a call whose number several leads share is not theirs until
    somebody chooses the lead."""
    events = Prefetch("events", queryset=CallEvent.objects.order_by("occurred_at", "id"))
    calls = (
        Call.objects.filter(lead=lead)
        .select_related("agent__profile")
        .prefetch_related(events)
        .order_by("started_at", "id")
    )
    return [
        {
            "direction": call.direction,
            "from": call.from_raw,
            "from_e164": call.from_e164,
            "to": call.to_raw,
            "to_e164": call.to_e164,
            "line": call.line,
            "manager": display_name(call.agent),
            "state": call.state,
            "started_at": isoformat(call.started_at),
            "answered_at": isoformat(call.answered_at),
            "ended_at": isoformat(call.ended_at),
            "duration_seconds": call.duration,
            "talk_time_seconds": call.talk_time,
            "hangup_cause": call.hangup_cause,
            "transferred_to": call.transferred_to,
            "recording_url": call.recording_url,
            "events": [
                {
                    "type": event.type,
                    "occurred_at": isoformat(event.occurred_at),
                    "received_at": isoformat(event.received_at),
                    "payload": event.payload,
                }
                for event in call.events.all()
            ],
        }
        for call in calls
    ]


def _emails(lead) -> list[dict]:
    return [
        {
            "kind": email.kind,
            "message_id": email.message_id,
            "from": email.from_email,
            "from_name": email.from_name,
            "to": email.to,
            "subject": email.subject,
            "text": email.text,
            "in_reply_to": email.in_reply_to,
            "references": email.references,
            "headers": email.headers,
            "sent_at": isoformat(email.sent_at),
            "received_at": isoformat(email.received_at),
        }
        for email in InboundEmail.objects.filter(lead=lead).order_by("received_at", "id")
    ]


def _contacts(lead) -> list[dict]:
    contacts = InboundContact.objects.filter(lead=lead).order_by("occurred_at", "id")
    return [
        {
            "channel": contact.channel,
            "reference": contact.ref,
            "occurred_at": isoformat(contact.occurred_at),
            "recorded_at": isoformat(contact.created_at),
        }
        for contact in contacts
    ]
