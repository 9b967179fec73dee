"""The one way a call or a letter from a lead reaches the CRM."""

from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext_noop

from crm import services as crm_services
from crm.models import Activity, Lead, LeadStatus
from telephony.models import InboundContact

CHANNEL_ACTIVITY = {
    InboundContact.Channel.CALL: Activity.Kind.CALL,
    InboundContact.Channel.EMAIL: Activity.Kind.EMAIL_IN,
}
# The reason given to the status change; nurturing records it as its halt reason.
CHANNEL_REASON = {InboundContact.Channel.CALL: "call", InboundContact.Channel.EMAIL: "reply"}
CHANNEL_NOTICE = {
    InboundContact.Channel.CALL: gettext_noop("%(lead)s called."),
    InboundContact.Channel.EMAIL: gettext_noop("%(lead)s wrote back: “%(subject)s”."),
}


@transaction.atomic
def record_inbound_contact(
    lead: Lead,
    channel: str,
    ref: str,
    *,
    at: datetime,
    summary: str,
    payload: dict | None = None,
    subject: str = "",
) -> Activity | None:
    """A call or letter from `lead`: put it on the timeline, tell the responsible manager, and
    take a nurtured lead back to "in progress" (which stops its nurturing, with the reason
    "call" or "reply"). The same `(channel, ref)` a second time changes nothing: returns None."""
    _contact, created = InboundContact.objects.get_or_create(
        channel=channel, ref=ref, defaults={"lead": lead, "occurred_at": at}
    )
    if not created:
        return None
    activity = crm_services.record_activity(
        lead, CHANNEL_ACTIVITY[channel], summary, payload=payload or {}, at=at
    )
    crm_services.notify(
        lead.responsible,
        CHANNEL_NOTICE[channel],
        {"lead": lead.full_name or lead.email or lead.phone, "subject": subject},
        lead=lead,
    )
    lead = Lead.objects.select_related("status").get(pk=lead.pk)
    if lead.status.kind == LeadStatus.Kind.NURTURING:
        crm_services.change_status(lead, "in_progress", reason=CHANNEL_REASON[channel])
    return activity
