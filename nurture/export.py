"""nurture's part of a lead's data export (crm.privacy.lead_export): its enrollments, every
email written to it, and the suppression of its address."""

from django.dispatch import receiver

from crm.export import isoformat
from crm.privacy import lead_export
from nurture.models import Enrollment, OutboundMessage, Suppression, normalize_address


@receiver(lead_export, dispatch_uid="nurture.export")
def export_nurturing(sender, lead, **kwargs):
    return {
        "enrollments": _enrollments(lead),
        "emails_sent": _emails(lead),
        "suppressions": _suppressions(lead),
    }


def _enrollments(lead) -> list[dict]:
    enrollments = Enrollment.objects.filter(lead=lead).select_related("sequence")
    return [
        {
            "sequence": enrollment.sequence.name,
            "state": enrollment.state,
            "halt_reason": enrollment.halt_reason,
            "messages_created": enrollment.sent_count,
            "enrolled_at": isoformat(enrollment.enrolled_at),
            "next_send_at": isoformat(enrollment.next_send_at),
            "ended_at": isoformat(enrollment.ended_at),
        }
        for enrollment in enrollments.order_by("enrolled_at", "id")
    ]


def _emails(lead) -> list[dict]:
    messages = OutboundMessage.objects.filter(enrollment__lead=lead).select_related(
        "enrollment__sequence"
    )
    return [
        {
            "sequence": message.enrollment.sequence.name,
            "number": message.number,
            "state": message.state,
            "to": message.to_email,
            "subject": message.subject,
            "body_text": message.body_text,
            "body_html": message.body_html,
            "message_id": message.message_id,
            "scheduled_for": isoformat(message.scheduled_for),
            "sent_at": isoformat(message.sent_at),
        }
        for message in messages.order_by("created_at", "id")
    ]


def _suppressions(lead) -> list[dict]:
    """The list's entries for the lead's address, lifted ones too; what caused an entry is left
    out, since it may name another lead with the same address."""
    address = normalize_address(lead.email)
    if not address:
        return []
    return [
        {
            "address": suppression.address,
            "reason": suppression.reason,
            "suppressed_at": isoformat(suppression.created_at),
            "lifted_at": isoformat(suppression.lifted_at),
            "why_lifted": suppression.lift_reason,
        }
        for suppression in Suppression.objects.filter(address=address).order_by("created_at", "id")
    ]
