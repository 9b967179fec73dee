"""Incoming mail posted to the ESPs' inbound webhooks (/anymail/<esp>/inbound/, through
`telephony.mail.esp_webhooks`)."""

import logging

from anymail.signals import inbound
from django.core.exceptions import BadRequest
from django.db import DatabaseError
from django.dispatch import receiver
from django.utils.translation import gettext

from telephony.mail.esp_webhooks import source_of
from telephony.mail.services import receive_email, reject

logger = logging.getLogger(__name__)


@receiver(inbound, dispatch_uid="telephony.inbound_email")
def receive_inbound_email(sender, event, esp_name, **kwargs):
    """The webhook has authenticated the ESP's post and Anymail has read it into a message.

    A database error answers 500, so the ESP delivers the message again later; a message that
    cannot be handled at all is kept for inspection (once per Message-ID) and answered 400.
    """
    source = f"anymail:{esp_name}"
    try:
        receive_email(event.message, source=source)
    except DatabaseError:
        raise
    except Exception as error:
        logger.exception("%s: an incoming message could not be handled", source)
        message_id = str(event.message.get("Message-ID") or "").strip()
        reject(source_of(esp_name, "inbound"), error, _raw(event.message), message_id=message_id)
        raise BadRequest(
            gettext("The message could not be handled; it is kept for inspection.")
        ) from error


def _raw(message) -> bytes:
    try:
        return message.as_bytes()
    except Exception:  # noqa: BLE001 - a message this broken may not serialize either
        return repr(message).encode()
