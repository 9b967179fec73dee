"""What an ESP reports about email we sent (Anymail tracking events): a bounce, rejection,
complaint or unsubscribe puts the address on the suppression list, which stops the nurturing
of every lead that has it."""

import logging

from crm.models import Lead
from nurture.models import OutboundMessage, Suppression, normalize_address
from nurture.services import suppress_address

logger = logging.getLogger(__name__)

# Why an ESP's tracking event suppresses the address.
DELIVERY_PROBLEMS = {
    "bounced": Suppression.Reason.BOUNCE,
    "rejected": Suppression.Reason.BOUNCE,
    "complained": Suppression.Reason.COMPLAINT,
    "unsubscribed": Suppression.Reason.UNSUBSCRIBE,
}


def handle_delivery_event(
    event_type: str, *, provider_message_id: str, recipient: str, metadata: dict, esp: str
) -> bool:
    """An ESP reported a bounce, rejection, complaint or unsubscribe: suppress the address (the
    one our message went to, else the event's recipient). Other events, and the same event
    again, change nothing. Returns whether any lead has that address."""
    if event_type not in DELIVERY_PROBLEMS:
        return False
    message = _message_for_event(provider_message_id, metadata)
    if message is not None:
        address = message.to_email or message.enrollment.lead.email
    else:
        address = recipient
    address = normalize_address(address)
    if not address:
        logger.info("%s %s event for an unknown message and no address", esp, event_type)
        return False
    details = {"esp": esp, "event": event_type, "provider_message_id": provider_message_id}
    if message is not None:
        details["message"] = message.pk
    suppress_address(address, DELIVERY_PROBLEMS[event_type], details=details)
    found = Lead.objects.filter(email=address).exists()
    if not found:
        logger.info("%s %s event for an address no lead has (suppressed)", esp, event_type)
    return found


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
