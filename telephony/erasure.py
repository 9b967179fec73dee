"""Telephony's part of erasing a person (crm.privacy.lead_erasure): the lead's calls stay for the
call report with their numbers and recording blanked and no lead; their raw events, the inbound
contacts, the letters from the lead and any rejected input that mentions the lead's address or
phone go."""

from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.dispatch import receiver

from crm.erasure import forget_admin_log
from crm.models import Lead
from crm.privacy import lead_erasure
from telephony.models import Call, CallEvent, InboundContact, InboundEmail, RejectedPayload


@receiver(lead_erasure, dispatch_uid="telephony.erasure")
def erase_telephony(sender, lead, by, **kwargs) -> dict:
    calls = list(_calls_of(lead).values_list("pk", flat=True))
    letters = InboundEmail.objects.filter(_letters_of(lead))
    forget_admin_log(Call, calls)
    forget_admin_log(InboundEmail, letters.values_list("pk", flat=True))
    counts = {
        "telephony.call_events": CallEvent.objects.filter(call__in=calls).delete()[0],
        "telephony.calls_anonymised": Call.objects.filter(pk__in=calls).update(
            lead=None,
            lead_manager=None,
            activity=None,
            from_raw="",
            from_e164="",
            to_raw="",
            to_e164="",
            recording_url="",
            transferred_to="",
        ),
        "telephony.inbound_contacts": InboundContact.objects.filter(lead=lead).delete()[0],
        "telephony.inbound_emails": letters.delete()[0],
        "telephony.rejected_payloads": _rejected_mentioning(lead).delete()[0],
    }
    Call.candidate_leads.through.objects.filter(lead=lead).delete()
    return counts


def _calls_of(lead):
    """The lead's calls, and calls from or to its number that no other lead has."""
    calls = Q(lead=lead)
    if lead.phone and not Lead.objects.filter(phone=lead.phone).exclude(pk=lead.pk).exists():
        calls |= Q(lead__isnull=True) & (Q(from_e164=lead.phone) | Q(to_e164=lead.phone))
    return Call.objects.filter(calls)


def _letters_of(lead) -> Q:
    """The letters matched to the lead, answering its emails, or from its address when no other
    lead has it (they would be "unmatched" and every manager could read them)."""
    letters = Q(lead=lead) | Q(outbound_message__enrollment__lead=lead)
    if lead.email and not Lead.objects.filter(email=lead.email).exclude(pk=lead.pk).exists():
        letters |= Q(from_email__iexact=lead.email)
    return letters


def _rejected_mentioning(lead):
    """Rejected input whose body or headers hold the lead's address or phone."""
    mentioning = RejectedPayload.objects.annotate(headers_text=Cast("headers", TextField())).filter(
        _mentions(lead, "body") | _mentions(lead, "headers_text")
    )
    return RejectedPayload.objects.filter(pk__in=list(mentioning.values_list("pk", flat=True)))


def _mentions(lead, field: str) -> Q:
    """Whether `field` holds the lead's address, or its phone as stored or as typed."""
    mentions = Q(pk__in=[])
    if lead.email:
        mentions |= Q(**{f"{field}__icontains": lead.email})
    for phone in {lead.phone, lead.phone.lstrip("+"), lead.phone_raw}:
        if phone:
            mentions |= Q(**{f"{field}__contains": phone})
    return mentions
