"""Incoming mail posted to Anymail's inbound webhooks (/anymail/<esp>/inbound/)."""

import logging

from anymail.signals import inbound
from django.core.exceptions import BadRequest
from django.db import DatabaseError
from django.dispatch import receiver

from telephony.mail.services import receive_email, reject

logger = logging.getLogger(__name__)


@receiver(inbound, dispatch_uid="telephony.inbound_email")
def receive_inbound_email(sender, event, esp_name, **kwargs):
    """Anymail has checked the webhook's secret and parsed the ESP's payload into a message.

    A database error answers 500, so the ESP delivers the message again later; a message that
    cannot be handled at all is kept for inspection and answered 400.
    """
    source = f"anymail:{esp_name}"
    try:
        receive_email(event.message, source=source)
    except DatabaseError:
        raise
    except Exception as error:
        logger.exception("%s: an incoming message could not be handled", source)
        message_id = str(event.message.get("Message-ID") or "").strip()
        reject(source, error, _raw(event.message), message_id=message_id)
        raise BadRequest("the message could not be handled") from error


def _raw(message) -> bytes:
    try:
        return message.as_bytes()
    except Exception:  # noqa: BLE001 - a message this broken may not serialize either
        return repr(message).encode()
