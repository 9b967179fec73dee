"""What an ESP reports about email we sent (Anymail tracking events): a bounce, rejection,
complaint or unsubscribe marks the address and stops the lead's nurturing."""

import logging

from crm.models import Lead
from nurture.models import OutboundMessage
from nurture.services import HaltReason, mark_address

logger = logging.getLogger(__name__)

# What an ESP's tracking event means for the lead's address, and why nurturing stops.
DELIVERY_PROBLEMS = {
    "bounced": (Lead.EmailStatus.BOUNCED, HaltReason.BOUNCE),
    "rejected": (Lead.EmailStatus.BOUNCED, HaltReason.BOUNCE),
    "complained": (Lead.EmailStatus.COMPLAINED, HaltReason.COMPLAINT),
    "unsubscribed": (Lead.EmailStatus.UNSUBSCRIBED, HaltReason.UNSUBSCRIBE),
}


def handle_delivery_event(
    event_type: str, *, provider_message_id: str, recipient: str, metadata: dict, esp: str
) -> bool:
    """An ESP reported a bounce, rejection, complaint or unsubscribe: mark the lead's address and
    stop its nurturing. Other events are ignored. Returns whether any lead was found."""
    if event_type not in DELIVERY_PROBLEMS:
        return False
    message = _message_for_event(provider_message_id, metadata)
    if message is not None:
        leads = [message.enrollment.lead]
    elif recipient:
        # The address itself is bad: every lead that uses it is affected.
        leads = list(Lead.objects.filter(email=recipient.strip().lower()))
    else:
        leads = []
    if not leads:
        logger.info("%s %s event for an unknown message or address", esp, event_type)
        return False
    email_status, reason = DELIVERY_PROBLEMS[event_type]
    for lead in leads:
        mark_address(
            lead,
            email_status,
            reason,
            details={"esp": esp, "event": event_type, "provider_message_id": provider_message_id},
        )
    return True


def _message_for_event(provider_message_id: str, metadata: dict):
    messages = OutboundMessage.objects.select_related("enrollment__lead")
    our_id = str((metadata or {}).get("outbound_message", ""))
    if our_id.isdigit():
        message = messages.filter(pk=int(our_id)).first()
        if message:
            return message
    if provider_message_id:
        return messages.filter(provider_message_id=provider_message_id).first()
    return None
