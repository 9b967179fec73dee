"""The one way a call or a letter from a lead reaches the CRM, and where what could not be
used is kept."""

import hashlib
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_noop

from crm import services as crm_services
from crm.models import Activity, Lead, LeadStatus, StatusChangeCause
from telephony.models import InboundContact, RejectedPayload

CHANNEL_ACTIVITY = {
    InboundContact.Channel.CALL: Activity.Kind.CALL,
    InboundContact.Channel.EMAIL: Activity.Kind.EMAIL_IN,
}
# What caused the status change; nurturing records it as its halt reason.
CHANNEL_CAUSE = {
    InboundContact.Channel.CALL: StatusChangeCause.CALL,
    InboundContact.Channel.EMAIL: StatusChangeCause.REPLY,
}
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
    take a nurtured lead back to "in progress" (which stops its nurturing, caused by the call
    or the reply). The same `(channel, ref)` a second time changes nothing: returns None."""
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
        {"lead": lead.display_name, "subject": subject},
        lead=lead,
    )
    lead = Lead.objects.select_related("status").get(pk=lead.pk)
    if lead.status.kind == LeadStatus.Kind.NURTURING:
        crm_services.change_status(lead, LeadStatus.IN_PROGRESS, cause=CHANNEL_CAUSE[channel])
    return activity


def keep_rejected(
    source: str, error: str, body: str, headers: dict, *, identity: str = ""
) -> RejectedPayload:
    """Keep input that could not be used, for somebody to look at. The same input from the
    same source again (a PBX or an ESP retrying) only counts one more time, with its latest
    error and headers: a duplicate changes nothing else. What makes two the same is `identity`
    (a letter's Message-ID, say) if given, else the body."""
    digest = hashlib.sha256((identity or body).encode("utf-8", "surrogatepass")).hexdigest()
    same = RejectedPayload.objects.filter(source=source, digest=digest)
    changes = {"times": F("times") + 1, "received_at": timezone.now(), "error": error}
    if same.update(**changes, headers=headers):
        return same.get()
    try:
        with transaction.atomic():
            return RejectedPayload.objects.create(
                source=source, error=error, body=body, digest=digest, headers=headers
            )
    except IntegrityError:  # the same input arrived at the same moment, and won
        same.update(**changes, headers=headers)
        return same.get()
