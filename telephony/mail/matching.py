"""Whose letter it is: the lead of the email it answers, else the lead with the sender's address."""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Case, IntegerField, Value, When

from crm.models import Lead, LeadStatus
from nurture.models import OutboundMessage
from telephony.mail.letters import Letter
from telephony.models import InboundEmail

Kind = InboundEmail.Kind
MatchedBy = InboundEmail.MatchedBy


@dataclass
class Match:
    lead: Lead | None = None
    matched_by: str = MatchedBy.UNMATCHED
    outbound_message: OutboundMessage | None = None


def find_match(letter: Letter) -> Match:
    """Whose letter is it: the lead of the message it answers, else the lead with the sender's
    address (the one being nurtured first, then the latest), else nobody."""
    ids = letter.thread_ids
    if ids:
        messages = {
            message.message_id: message
            for message in OutboundMessage.objects.filter(message_id__in=ids).select_related(
                "enrollment__lead"
            )
        }
        for message_id in ids:
            if message_id in messages:
                message = messages[message_id]
                return Match(message.enrollment.lead, MatchedBy.THREAD, message)
    if letter.kind == Kind.BOUNCE:
        address = letter.bounce.recipients[0] if letter.bounce.recipients else ""
    else:
        address = letter.from_email
    lead = lead_for_address(address)
    if lead is not None:
        return Match(lead, MatchedBy.SENDER)
    return Match()


def lead_for_address(address: str) -> Lead | None:
    if not address:
        return None
    return (
        Lead.objects.filter(email=address.lower())  # lead addresses are stored in lower case
        .annotate(
            nurtured=Case(
                When(status__kind=LeadStatus.Kind.NURTURING, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("nurtured", "-created_at", "-pk")
        .first()
    )


def is_our_address(address: str) -> bool:
    if not address:
        return False
    if address == settings.DEFAULT_FROM_EMAIL.lower():
        return True
    return get_user_model().objects.filter(email__iexact=address).exists()
