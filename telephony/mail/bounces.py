"""Delivery status notifications (RFC 3464): which recipients failed, and for which email.

Only reads the message: no models, no database.
"""

import re
from dataclasses import dataclass, field
from email.message import Message

from telephony.mail.decoding import MESSAGE_ID, decode_words, header_dict, header_reader, part_text


@dataclass
class Bounce:
    """What a delivery status notification (RFC 3464) says."""

    failed: bool  # some recipient failed for good (not merely delayed or relayed)
    recipients: list[str] = field(default_factory=list)  # addresses that failed
    original_message_id: str = ""
    report: list[dict] = field(default_factory=list)  # per-recipient fields, for inspection


def is_delivery_report(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == "delivery-status"
    )


def read_bounce(message: Message) -> Bounce:
    """The recipients that failed, and the Message-ID of the email that bounced."""
    bounce = Bounce(failed=False)
    for part in message.get_payload():  # the report's parts: text, status, the original
        content_type = part.get_content_type()
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            _read_status(part, bounce)
        elif content_type in ("message/rfc822", "message/global"):
            original = part.get_payload()
            if isinstance(original, list) and original:
                found = MESSAGE_ID.findall(header_reader(header_dict(original[0]))("Message-ID"))
                bounce.original_message_id = bounce.original_message_id or "".join(found[:1])
        elif content_type in ("text/rfc822-headers", "text/global-headers"):
            found = re.search(r"^message-id:\s*(<[^<>\s]+>)", part_text(part), re.I | re.M)
            bounce.original_message_id = bounce.original_message_id or (
                found.group(1) if found else ""
            )
    return bounce


def _read_status(part: Message, bounce: Bounce) -> None:
    blocks = part.get_payload()
    if not isinstance(blocks, list):  # an unparsed report: read the fields from the text
        blocks = [_fields(chunk) for chunk in re.split(r"\n\s*\n", part_text(part))]
    else:
        blocks = [{k.lower(): decode_words(v) for k, v in block.items()} for block in blocks]
    for fields in blocks[1:] if len(blocks) > 1 else blocks:
        action = fields.get("action", "").lower()
        recipient = fields.get("final-recipient") or fields.get("original-recipient") or ""
        address = recipient.split(";", 1)[-1].strip().strip("<>").lower()
        if not action and not address:
            continue
        bounce.report.append(
            {
                "final-recipient": address,
                "action": action,
                "status": fields.get("status", ""),
                "diagnostic-code": " ".join(fields.get("diagnostic-code", "").split()),
            }
        )
        if action == "failed":
            bounce.failed = True
            if address:
                bounce.recipients.append(address)


def _fields(chunk: str) -> dict:
    fields = {}
    for match in re.finditer(r"^([\w-]+):[ \t]*(.*(?:\n[ \t].*)*)", chunk, re.MULTILINE):
        fields[match.group(1).lower()] = decode_words(match.group(2))
    return fields
